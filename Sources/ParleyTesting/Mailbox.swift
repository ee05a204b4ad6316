import Synchronization

/// Collects values that arrive on other threads and lets a test wait, with a time limit, until
/// they satisfy a condition. No polling: every append re-checks the waiting conditions.
public final class Mailbox<Element: Sendable>: Sendable {
    private struct Waiter {
        /// Resumes the waiting task and returns true when the condition holds (or can no longer).
        let attempt: @Sendable (_ items: [Element], _ finished: Bool) -> Bool
        let cancel: @Sendable () -> Void
    }

    private struct State {
        var items: [Element] = []
        var finished = false
        var waiters: [Int: Waiter] = [:]
        /// Waits cancelled before their continuation was registered.
        var cancelled: Set<Int> = []
        /// Waits that resumed and whose cancellation (when their group ends) is still to come.
        var completed: Set<Int> = []
        var nextID = 0
    }

    private let state = Mutex(State())

    /// An empty mailbox.
    public init() {}

    /// Everything appended so far.
    public var items: [Element] { state.withLock { $0.items } }

    /// Whether ``finish()`` was called.
    public var isFinished: Bool { state.withLock { $0.finished } }

    /// Adds `item` and wakes the waits whose condition now holds.
    public func append(_ item: Element) {
        state.withLock { state in
            state.items.append(item)
            Self.wake(&state)
        }
    }

    /// No more items will come (the connection or the event stream ended).
    public func finish() {
        state.withLock { state in
            state.finished = true
            Self.wake(&state)
        }
    }

    private static func wake(_ state: inout State) {
        let items = state.items
        let finished = state.finished
        for (id, waiter) in state.waiters where waiter.attempt(items, finished) {
            state.waiters[id] = nil
            state.completed.insert(id)
        }
    }

    /// Waits until `condition` returns a value for the items so far.
    ///
    /// - Throws: ``WaitFailure`` after `timeout`, or when the mailbox is finished and the
    ///   condition still does not hold.
    public func wait<T: Sendable>(
        for description: String,
        timeout: Duration = .seconds(30),
        until condition: @escaping @Sendable (_ items: [Element], _ finished: Bool) -> T?
    ) async throws -> T {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        return try await withTimeout(description, timeout: timeout) {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                    let attempt: @Sendable ([Element], Bool) -> Bool = { items, finished in
                        if let value = condition(items, finished) {
                            continuation.resume(returning: value)
                            return true
                        }
                        if finished {
                            continuation.resume(
                                throwing: WaitFailure("\(description): ended without it (\(items.count) items)")
                            )
                            return true
                        }
                        return false
                    }
                    self.state.withLock { state in
                        if state.cancelled.remove(id) != nil {
                            continuation.resume(throwing: CancellationError())
                        } else if attempt(state.items, state.finished) {
                            state.completed.insert(id)
                        } else {
                            state.waiters[id] = Waiter(attempt: attempt) {
                                continuation.resume(throwing: CancellationError())
                            }
                        }
                    }
                }
            } onCancel: {
                let waiter = self.state.withLock { state -> Waiter? in
                    if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                    if state.completed.remove(id) == nil { state.cancelled.insert(id) }
                    return nil
                }
                waiter?.cancel()
            }
        }
    }
}

extension Mailbox {
    /// Waits until the mailbox is finished.
    public func waitUntilFinished(_ description: String, timeout: Duration = .seconds(30)) async throws {
        try await wait(for: description, timeout: timeout) { _, finished in finished ? () : nil }
    }
}
