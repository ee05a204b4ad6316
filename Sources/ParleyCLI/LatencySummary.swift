/// Percentiles of latency samples, by the nearest-rank method.
struct LatencySummary {
    /// The samples in nanoseconds, ascending.
    private let sorted: [Int64]

    init(nanoseconds samples: [Int64]) {
        sorted = samples.sorted()
    }

    var count: Int { sorted.count }

    /// The smallest sample that at least `fraction` (0...1) of the samples do not exceed, in
    /// milliseconds; nil without samples.
    func percentile(_ fraction: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        let index = min(max(rank, 1), sorted.count) - 1
        return Double(sorted[index]) / 1_000_000
    }
}
