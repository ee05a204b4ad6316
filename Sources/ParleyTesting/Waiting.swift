/// A wait in a test that did not end as expected: what was awaited, and why it failed.
public struct WaitFailure: Error, CustomStringConvertible {
    /// What was awaited and what happened instead.
    public var description: String

    /// A failure described by `description`.
    public init(_ description: String) { self.description = description }
}

/// Runs `body` and fails with a clear message if it takes longer than `timeout`.
///
/// - Throws: ``WaitFailure`` naming `description` after `timeout`, or what `body` throws.
public func withTimeout<T: Sendable>(
    _ description: String,
    timeout: Duration = .seconds(30),
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw WaitFailure("timed out after \(timeout) waiting for \(description)")
        }
        defer { group.cancelAll() }
        guard let value = try await group.next() else { throw WaitFailure(description) }
        return value
    }
}

/// Runs `body` until it returns or `timeout` passes (then it is cancelled and nil returned).
public func withDeadline<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async -> T?) async -> T? {
    await withTaskGroup(of: T?.self) { group in
        group.addTask { await body() }
        group.addTask {
            try? await Task.sleep(for: timeout)  // the deadline; cancelled when body wins
            return nil
        }
        defer { group.cancelAll() }
        return await group.next() ?? nil
    }
}

/// Checks `condition` every 20 ms until it holds, for state that offers no event to wait on.
///
/// - Throws: ``WaitFailure`` naming `description` after `timeout`, or what `condition` throws.
public func eventually(
    _ description: String,
    timeout: Duration = .seconds(30),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            throw WaitFailure("timed out after \(timeout) waiting for \(description)")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
