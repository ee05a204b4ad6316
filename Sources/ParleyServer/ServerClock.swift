package import Foundation

/// Where the server reads the time for logon throttling, resumption tokens and the time a
/// declared node is recorded: the system's
/// clocks in production; in the package's tests, a clock that stands still until the test
/// moves it, so that back-offs and expiry are tested without waiting for real time to pass.
package struct ServerClock: Sendable {
    /// Monotonic time, for back-offs.
    package var now: @Sendable () -> ContinuousClock.Instant
    /// Wall-clock time, for the expiry of resumption tokens and node records (stored as dates).
    package var date: @Sendable () -> Date

    /// A clock reading `now` and `date`.
    package init(
        now: @escaping @Sendable () -> ContinuousClock.Instant,
        date: @escaping @Sendable () -> Date
    ) {
        self.now = now
        self.date = date
    }

    /// The system's clocks.
    package static let system = ServerClock(now: { ContinuousClock.now }, date: { Date() })
}
