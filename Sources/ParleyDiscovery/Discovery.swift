/// Finds other Parley nodes on the local network and makes this node findable.
///
/// The seam between a node and a discovery mechanism (DNS-SD over Avahi on Linux; a fake in
/// tests). An implementation advertises one ``ServiceRecord`` for the node and reports the other
/// nodes it sees as ``PeerEvent``s, keyed by node ID, never by the advertised instance name.
///
/// Discovery is a hint, not a liveness signal: mDNS does not report crashed peers for a long time
/// (their records linger), so whether a peer is alive is decided by the links to it.
public protocol Discovery: Sendable {
    /// The peers seen on the network: `.up` the first time a node ID is seen, `.changed` when its
    /// fields or addresses change, `.down` when its last advertisement is withdrawn.
    ///
    /// The sequence has a single consumer; it never includes this node's own advertisement.
    var peerEvents: PeerEvents { get }

    /// Starts advertising `record`, replacing any earlier one.
    ///
    /// Returns once the record is accepted; it reaches the network when the backend is available
    /// (an implementation keeps retrying while its daemon is absent).
    /// - Throws: ``DiscoveryError`` with code ``DiscoveryError/Code/invalidRecord`` when the record
    ///   cannot be advertised as given, or ``DiscoveryError/Code/shutDown`` after shutdown.
    func advertise(_ record: ServiceRecord) async throws(DiscoveryError)

    /// Updates the advertised record, in place when only TXT fields (user, server, status) change.
    /// - Throws: ``DiscoveryError`` with code ``DiscoveryError/Code/notAdvertising`` when nothing
    ///   is advertised yet, plus the errors of ``advertise(_:)``.
    func update(_ record: ServiceRecord) async throws(DiscoveryError)

    /// Stops advertising; peers see this node go down.
    func withdraw() async
}
