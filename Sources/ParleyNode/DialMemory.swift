import ParleyCore
import ParleyLink

/// Which peers this node failed to reach by dialling, and when it may dial them again.
///
/// A peer whose dial failed (nothing answered, the TLS handshake timed out, the link died and the
/// redial failed) is not dialled on the send path again: sends take the server or the outbox at
/// once, and a dial in the background, after a ``Backoff``, finds out when the peer is back. A
/// link that comes up (either way) or a change that discovery reports forgets the failures.
/// Pure state: the node calls these methods under its state lock and carries out the decision.
struct DialMemory: Sendable {
    /// What to do about a dial to a peer.
    enum Decision: Sendable, Hashable {
        /// Dial now.
        case dial
        /// Do not dial: the peer failed recently.
        case wait
        /// Do not dial on this path, but start one dial in the background (the backoff expired).
        case probeInBackground
    }

    private struct Entry: Sendable {
        var failures: Int
        var until: ContinuousClock.Instant
        /// A background dial was requested since the backoff expired.
        var probing: Bool
    }

    let backoff: Backoff
    private var entries: [NodeID: Entry] = [:]

    init(backoff: Backoff) {
        self.backoff = backoff
    }

    /// Whether `peer` may be dialled now: on the send path (`inline`, where a dial that hangs
    /// holds up the message), or in the background (standing links, probes, redials).
    mutating func decide(_ peer: NodeID, inline: Bool, now: ContinuousClock.Instant) -> Decision {
        guard var entry = entries[peer] else { return .dial }
        guard now >= entry.until else { return .wait }
        if !inline { return .dial }
        guard !entry.probing else { return .wait }
        entry.probing = true
        entries[peer] = entry
        return .probeInBackground
    }

    /// Every address of `peer` failed; returns how long it is left alone.
    @discardableResult
    mutating func failed(_ peer: NodeID, now: ContinuousClock.Instant, randomFactor: Double? = nil) -> Duration {
        let failures = (entries[peer]?.failures ?? 0) + 1
        let delay = backoff.delay(afterFailures: failures, randomFactor: randomFactor)
        entries[peer] = Entry(failures: failures, until: now + delay, probing: false)
        return delay
    }

    /// A link to `peer` is up, or discovery shows it anew: it is dialled as usual again.
    mutating func forget(_ peer: NodeID) {
        entries[peer] = nil
    }

    /// Whether dials to `peer` failed and were not forgotten since.
    func isBackingOff(_ peer: NodeID) -> Bool { entries[peer] != nil }
}
