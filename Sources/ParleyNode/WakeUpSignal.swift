import Synchronization

/// Wakes one waiting task: the node's "something changed, look again" between its parts (the
/// outbox flusher, the presence publisher, the server logon, the end of ``ParleyNode/run()``).
///
/// Wake-ups given while nobody waits are kept as one (the waiter looks at the current state,
/// not at each change); ``finish()`` ends the waiting for good. One task waits at a time.
final class WakeUpSignal: Sendable {
    private struct State {
        var pending = false
        var finished = false
        var waiter: CheckedContinuation<Bool, Never>?
    }

    private let state = Mutex(State())

    init() {}

    /// Wakes the waiter, or the next call to ``wait()``. Nothing after ``finish()``.
    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard !state.finished else { return nil }
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: true)
    }

    /// Ends the waiting: the waiter and every later ``wait()`` get false.
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            state.finished = true
            state.pending = false
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: false)
    }

    /// Waits for a wake-up: true, or false once finished or when the task is cancelled.
    func wait() async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let answer = state.withLock { state -> Bool? in
                    if state.finished || Task.isCancelled { return false }
                    if state.pending {
                        state.pending = false
                        return true
                    }
                    precondition(state.waiter == nil, "one task waits on a WakeUpSignal at a time")
                    state.waiter = continuation
                    return nil
                }
                if let answer { continuation.resume(returning: answer) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: false)
        }
    }
}
