import Histogram

/// Latency samples in an HDR histogram: constant memory whatever the run's length, and
/// percentiles within 0.1 % (3 significant digits), from 1 µs to 1 hour.
struct LatencySummary: Sendable {
    private var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1_000,
        highestTrackableValue: 3_600_000_000_000,
        numberOfSignificantValueDigits: .three
    )

    init() {}

    /// Records one latency (negative clock skew counts as 0; beyond an hour, as an hour).
    mutating func record(nanoseconds sample: Int64) {
        let value = UInt64(clamping: max(sample, 1_000))
        _ = histogram.record(min(value, 3_600_000_000_000))
    }

    mutating func merge(_ other: LatencySummary) {
        histogram.add(other.histogram)
    }

    var count: Int { Int(histogram.totalCount) }

    /// The latency that `fraction` (0...1) of the samples do not exceed, in milliseconds; nil
    /// without samples.
    func percentile(_ fraction: Double) -> Double? {
        guard histogram.totalCount > 0 else { return nil }
        return Double(histogram.valueAtPercentile(fraction * 100)) / 1_000_000
    }
}
