import ParleyCore
import ParleyLink

/// What ``LinkTable`` needs of a link: an identity (a class instance) and whether it is still open.
protocol TableLink: AnyObject, Sendable {
    var isOpen: Bool { get }
}

extension DirectLink: TableLink {}

/// The node's direct links and what it remembers about dialling peers: the ready links by peer,
/// every link (to close at shutdown), the peers that refused a link, the peers whose dials failed
/// lately (``DialMemory``) and the standing links to open.
///
/// Pure state, generic over the link so that tests need no sockets: the node calls these methods
/// under its state lock, with the time as a parameter, and carries out what they return after
/// releasing it.
struct LinkTable<Link: TableLink>: Sendable {
    /// Whether and how to dial a peer (``decideDial(to:purpose:hasAddresses:now:)``).
    enum DialDecision {
        /// An open link to the peer exists: use it.
        case use(Link)
        /// The peer refused this node's last link (or this node refused it) until later.
        case refused(ParleyNode.Refusal)
        /// Dial now.
        case dial
        /// Do not dial: the peer failed lately. With `probe`, a dial in the background was asked
        /// for (``pendingDials``): the node wakes its flusher.
        case wait(probe: Bool)
    }

    /// Ready links by peer node.
    private(set) var ready: [ParleyNode.NodeID: [ObjectIdentifier: Link]] = [:]
    /// Every link, ready or not, to close at shutdown.
    private(set) var all: [ObjectIdentifier: Link] = [:]
    /// Peers that refused this node's link (a fatal ERROR), or that this node refused: not
    /// dialled again before `until`.
    private(set) var refusals: [ParleyNode.NodeID: ParleyNode.Refusal] = [:]
    /// Discovered peers to open a standing link to (the flusher dials them).
    private(set) var pendingDials: Set<ParleyNode.NodeID> = []
    /// Peers that could not be dialled lately: not dialled on the send path for a while.
    private(set) var dials: DialMemory
    /// Links are admitted (the node runs and is not stopping).
    private(set) var serving = false

    init(dialBackoff: Backoff) {
        dials = DialMemory(backoff: dialBackoff)
    }

    /// The node runs: links are admitted from now on.
    mutating func start() { serving = true }

    /// The node stops: no link is admitted any more.
    mutating func stop() { serving = false }

    /// Every link, ready or not: what the node closes at shutdown.
    var everyLink: [Link] { Array(all.values) }

    /// Registers a new link (accepted or dialled) for the teardown to close, unless the node is
    /// not serving links; then the caller closes it.
    mutating func admit(_ link: Link) -> Bool {
        guard serving else { return false }
        all[ObjectIdentifier(link)] = link
        return true
    }

    /// Whether to dial `peer`: for a message that has another route (`.sendWithAlternative`), a
    /// peer that failed lately is not waited for; the backoff of a failed peer is kept, and a
    /// refusal is kept until its time.
    mutating func decideDial(
        to peer: ParleyNode.NodeID,
        purpose: ParleyNode.DialPurpose,
        hasAddresses: Bool,
        now: ContinuousClock.Instant
    ) -> DialDecision {
        if let open = ready[peer]?.values.first(where: { $0.isOpen }) { return .use(open) }
        if let refusal = refusals[peer], refusal.until > now { return .refused(refusal) }
        let decision: DialMemory.Decision =
            switch purpose {
            case _ where !hasAddresses, .sendWithoutAlternative: .dial
            case .sendWithAlternative: dials.decide(peer, inline: true, now: now)
            case .background: dials.decide(peer, inline: false, now: now)
            }
        switch decision {
        case .dial:
            return .dial
        case .wait:
            return .wait(probe: false)
        case .probeInBackground:
            pendingDials.insert(peer)
            return .wait(probe: true)
        }
    }

    /// Every address of `peer` failed; returns how long it is left alone, or nil when the node
    /// stopped serving (the dials failed because of that, not because of the peer).
    mutating func dialFailed(_ peer: ParleyNode.NodeID, now: ContinuousClock.Instant, randomFactor: Double? = nil)
        -> Duration?
    {
        guard serving else { return nil }
        return dials.failed(peer, now: now, randomFactor: randomFactor)
    }

    /// A link passed NODE_HELLO: it carries messages, and `peer` is dialled as usual again.
    mutating func linkReady(_ link: Link, peer: ParleyNode.NodeID) {
        ready[peer, default: [:]][ObjectIdentifier(link)] = link
        dials.forget(peer)
    }

    /// A link closed (`peer` is its hello's node, nil if it never got that far). Returns whether
    /// it was the peer's last ready link while the node still serves: then the node redials.
    mutating func linkClosed(_ link: Link, peer: ParleyNode.NodeID?) -> Bool {
        let key = ObjectIdentifier(link)
        all[key] = nil
        guard let peer, ready[peer]?.removeValue(forKey: key) != nil else { return false }
        guard ready[peer]?.isEmpty == true else { return false }
        ready[peer] = nil
        return serving
    }

    /// Whether a ready link to `peer` exists.
    func isLinked(_ peer: ParleyNode.NodeID) -> Bool { ready[peer] != nil }

    /// A refused link (by the peer, or by this node): the peer is not dialled again before a
    /// backoff, longer after each refusal, so neither side redials in a tight loop.
    mutating func refused(
        _ peer: ParleyNode.NodeID,
        _ reason: ParleyError,
        byPeer: Bool,
        now: ContinuousClock.Instant,
        randomFactor: Double? = nil
    ) -> ParleyNode.Refusal {
        let count = (refusals[peer]?.count ?? 0) + 1
        let delay = ParleyNode.Refusal.backoff.delay(afterFailures: count, randomFactor: randomFactor)
        let refusal = ParleyNode.Refusal(count: count, until: now + delay, delay: delay, reason: reason, byPeer: byPeer)
        refusals[peer] = refusal
        return refusal
    }

    /// The peer took a message: whatever it refused before is settled.
    mutating func delivered(to peer: ParleyNode.NodeID) {
        refusals[peer] = nil
    }

    /// A pinned key was forgotten: this node's own refusals, and the dials that failed because of
    /// them, are settled; the peers' refusals stand.
    mutating func forgetOwnRefusals() {
        refusals = refusals.filter { $0.value.byPeer }
        dials = DialMemory(backoff: dials.backoff)
    }

    /// Discovery shows `peer` anew or changed: dialling it may work now. With `openLink` (this
    /// node opens the standing link to it), a dial is asked for unless a link is ready.
    mutating func discovered(_ peer: ParleyNode.NodeID, openLink: Bool) {
        dials.forget(peer)
        if openLink, !isLinked(peer) { pendingDials.insert(peer) }
    }

    /// The standing links to open now: the requested peers without a ready link.
    mutating func takePendingDials() -> [ParleyNode.NodeID] {
        defer { pendingDials = [] }
        return pendingDials.filter { !isLinked($0) }.sorted()
    }
}
