package import Foundation

// The one place where a `Duration` becomes the numbers other APIs take (Foundation's seconds,
// metrics' nanoseconds). NIO's own `TimeAmount(_: Duration)` covers event-loop timers.

extension Duration {
    /// The duration in seconds, for `Date` arithmetic and Foundation's APIs.
    package var timeInterval: TimeInterval {
        TimeInterval(components.seconds) + TimeInterval(components.attoseconds) / 1e18
    }

    /// The whole duration in nanoseconds, saturating at Int64's bounds (about 292 years).
    package var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (total, overflowAgain) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflowAgain { return scaled < 0 ? .min : .max }
        return total
    }
}
