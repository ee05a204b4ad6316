/// Delays that double after each failure up to a maximum, with jitter, so that nodes and clients
/// that failed together (a server restart, a LAN cut) do not all try again at the same instant.
/// The one retry formula of Parley: the client's reconnects, the node's dials, logons and
/// refusals use it.
package struct Backoff: Sendable, Hashable {
    /// The delay after the first failure (before jitter).
    package var initial: Duration
    /// The longest delay (before jitter).
    package var maximum: Duration
    /// Each delay is multiplied by a random factor in this range.
    package var jitter: ClosedRange<Double> = 0.8...1.2

    package init(initial: Duration, maximum: Duration, jitter: ClosedRange<Double> = 0.8...1.2) {
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The delay after `failures` failures in a row (at least 1): ``initial`` doubled for each
    /// failure after the first, capped at ``maximum``, then jittered.
    package func delay(afterFailures failures: Int, randomFactor: Double? = nil) -> Duration {
        let doublings = min(max(failures, 1) - 1, 30)
        let base = min(initial * (1 << doublings), maximum)
        return base * (randomFactor ?? Double.random(in: jitter))
    }
}
