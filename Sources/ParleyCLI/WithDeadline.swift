/// Runs `operation` until it returns or `deadline` passes, whichever comes first.
///
/// At the deadline the operation's task is cancelled; the operation is expected to notice
/// (iterating an `AsyncStream` ends, sleeps throw) and return what it has so far, which is
/// then returned. Without a deadline the operation runs to its end.
func withDeadline<Result: Sendable>(
    _ deadline: ContinuousClock.Instant?,
    operation: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    guard let deadline else { return try await operation() }
    return try await withThrowingTaskGroup(of: Result?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            // Cancelled when the operation returns first, which is not a failure.
            try? await Task.sleep(until: deadline, clock: .continuous)
            return nil
        }
        var result: Result?
        while let next = try await group.next() {
            if let next { result = next }
            group.cancelAll()
        }
        guard let result else {
            throw CommandFailure(message: "the operation ended without a result")
        }
        return result
    }
}

extension ContinuousClock.Instant {
    /// `seconds` from now, or nil for no limit.
    static func after(seconds: Double?) -> ContinuousClock.Instant? {
        seconds.map { ContinuousClock.now + .milliseconds(Int64(($0 * 1000).rounded())) }
    }
}
