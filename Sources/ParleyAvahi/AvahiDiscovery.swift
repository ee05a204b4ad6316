public import Logging
public import ParleyCore
public import ParleyDiscovery
public import ServiceLifecycle
import Synchronization

/// ``/ParleyDiscovery/Discovery`` on Avahi (DNS-SD over mDNS, through avahi-daemon and D-Bus):
/// advertises this node as a `_parley._tcp` service and reports the other nodes as peer events.
///
/// It works while ``run()`` runs:
///
/// ```swift
/// let discovery = try AvahiDiscovery(configuration: .init(ownNodeID: nodeID), logger: logger)
/// try await discovery.advertise(ServiceRecord(instanceName: "alice's laptop", port: 7000, nodeID: nodeID))
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await discovery.run() }
///     for await event in discovery.peerEvents { ... }
/// }
/// ```
///
/// Robust to the daemon: without D-Bus or avahi-daemon at start it logs one warning and keeps
/// retrying (the node works on without LAN discovery); when the daemon restarts it publishes and
/// browses again by itself. Peers seen before a lost connection stay up, unconfirmed, until the
/// browser has looked again or ``Configuration/staleGracePeriod`` has passed.
public final class AvahiDiscovery: Discovery {
    public struct Configuration: Sendable {
        /// This node's ID: advertisements carrying it are never reported as peers.
        public var ownNodeID: NodeID
        /// The DNS-SD service type to advertise and browse.
        public var serviceType: String
        /// The first delay before trying again to reach D-Bus; it doubles up to
        /// ``maximumRetryDelay``. (When D-Bus is up but avahi-daemon is not, the client follows
        /// the daemon's arrival on the bus without polling.)
        public var retryDelay: Duration
        public var maximumRetryDelay: Duration
        /// How long peers stay up, unconfirmed, after the connection to avahi-daemon is lost.
        public var staleGracePeriod: Duration
        /// The most peers tracked at once (1...65 536); further nodes are ignored with a warning.
        public var maximumPeers: Int

        public init(
            ownNodeID: NodeID,
            serviceType: String = "_parley._tcp",
            retryDelay: Duration = .seconds(1),
            maximumRetryDelay: Duration = .seconds(30),
            staleGracePeriod: Duration = .seconds(30),
            maximumPeers: Int = 1024
        ) {
            self.ownNodeID = ownNodeID
            self.serviceType = serviceType
            self.retryDelay = retryDelay
            self.maximumRetryDelay = maximumRetryDelay
            self.staleGracePeriod = staleGracePeriod
            self.maximumPeers = maximumPeers
        }
    }

    private enum Lifecycle {
        case idle
        case running
        case finished
    }

    private struct ShutdownGate {
        var requested = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    public let peerEvents: PeerEvents
    private let session: AvahiSession
    /// Guards the session's existence. Lock order: `lifecycle`, then the poll lock; the poll
    /// thread never takes `lifecycle`, so this cannot deadlock.
    private let lifecycle = Mutex(Lifecycle.idle)
    private let gate = Mutex(ShutdownGate())

    /// Allocates the Avahi event loop; nothing runs and nothing is contacted until ``run()``.
    /// - Throws: ``/ParleyDiscovery/DiscoveryError`` if the configuration is invalid or the event
    ///   loop cannot be made.
    public init(configuration: Configuration, logger: Logger) throws(DiscoveryError) {
        guard (1...65_536).contains(configuration.maximumPeers) else {
            throw DiscoveryError(code: .invalidRecord, message: "maximumPeers must be in 1...65536")
        }
        var configuration = configuration
        configuration.retryDelay = max(configuration.retryDelay, .milliseconds(10))
        configuration.maximumRetryDelay = max(configuration.maximumRetryDelay, configuration.retryDelay)
        var logger = logger
        logger[metadataKey: "discovery.node"] = "\(configuration.ownNodeID)"
        // At most one pending event per node (see PeerEventQueue): up to twice the peer limit
        // (peers up now, plus peers the consumer still has to be told are down).
        let (events, continuation) = PeerEvents.makeStream(bufferLimit: 2 * configuration.maximumPeers)
        self.peerEvents = events
        self.session = try AvahiSession(configuration: configuration, logger: logger, events: continuation)
    }

    deinit {
        // run() never ran: free the unused event loop.
        if lifecycle.withLock({ $0 == .idle }) { session.shutDown() }
    }

    /// Runs discovery until the calling task is cancelled, ``shutDown()`` is called or (run as a
    /// swift-service-lifecycle `Service` in a `ServiceGroup`) graceful shutdown comes, then
    /// withdraws the advertisement (peers see this node go down) and ends ``peerEvents``.
    /// - Throws: ``/ParleyDiscovery/DiscoveryError`` with
    ///   ``/ParleyDiscovery/DiscoveryError/Code/alreadyRunning`` on a second call, or if Avahi's
    ///   event loop thread cannot start. An absent daemon is not an error.
    public func run() async throws {
        try lifecycle.withLock { state throws(DiscoveryError) in
            guard state == .idle else {
                throw DiscoveryError(code: .alreadyRunning, message: "run() may be called only once")
            }
            state = .running
        }
        do {
            try session.start()
        } catch {
            finish()
            throw error
        }
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = gate.withLock { gate in
                        if gate.requested || Task.isCancelled { return true }
                        gate.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                shutDown()
            }
        } onGracefulShutdown: {
            self.shutDown()
        }
        finish()
    }

    /// Makes ``run()`` return, as cancelling its task does.
    public func shutDown() {
        let waiter = gate.withLock { gate in
            gate.requested = true
            defer { gate.waiter = nil }
            return gate.waiter
        }
        waiter?.resume()
    }

    private func finish() {
        lifecycle.withLock { $0 = .finished }
        session.shutDown()
    }

    public func advertise(_ record: ServiceRecord) async throws(DiscoveryError) {
        try record.validate()
        let txt = try TXTRecord(record).encoded()
        guard withSession({ $0.advertise(record, txt: txt) }) != nil else { throw Self.shutDownError }
    }

    public func update(_ record: ServiceRecord) async throws(DiscoveryError) {
        try record.validate()
        let txt = try TXTRecord(record).encoded()
        guard let updated = withSession({ $0.update(record, txt: txt) }) else { throw Self.shutDownError }
        guard updated else {
            throw DiscoveryError(code: .notAdvertising, message: "update(_:) before advertise(_:)")
        }
    }

    /// Why LAN discovery does not work now (no D-Bus, no avahi-daemon, ...); nil while connected
    /// to avahi-daemon, before ``run()`` has tried, and after it ended. Discovery keeps retrying
    /// either way: this is for callers that must tell "nobody is there" from "cannot look".
    public var unavailability: DiscoveryError? {
        withSession { $0.outage } ?? nil
    }

    public func withdraw() async {
        // After shutdown the advertisement is gone already: nothing to do.
        _ = withSession { $0.withdraw() }
    }

    private static let shutDownError = DiscoveryError(code: .shutDown, message: "discovery has shut down")

    /// Runs `body` on the session with the poll lock held; nil once discovery has finished.
    private func withSession<Result>(_ body: (AvahiSession) -> Result) -> Result? {
        lifecycle.withLock { state -> Result? in
            guard state != .finished else { return nil }
            session.lock()
            defer { session.unlock() }
            return body(session)
        }
    }
}

/// Discovery is a swift-service-lifecycle service: in a `ServiceGroup`, put it before the node
/// that uses it, so that the node (shut down first, in reverse order) can still withdraw its
/// advertisement.
extension AvahiDiscovery: Service {}
