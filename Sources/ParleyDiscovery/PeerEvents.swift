import Synchronization

/// The asynchronous sequence of ``PeerEvent``s from a ``Discovery``, with a bounded buffer.
///
/// Events wait in a `PeerEventQueue`: a slow consumer gets at most one event per node, the
/// latest state merged with what it has not seen yet, so memory stays bounded and no final state
/// is lost. The sequence has a single consumer; it ends after ``Continuation/finish()`` once the
/// pending events are consumed, and an iteration ends early when its task is cancelled.
public struct PeerEvents: AsyncSequence, Sendable {
    public typealias Element = PeerEvent
    public typealias Failure = Never

    /// The producer side; any thread may call it.
    public struct Continuation: Sendable {
        /// What ``yield(_:)`` did with an event.
        public enum YieldResult: Hashable, Sendable {
            /// Queued (possibly merged with a pending event for the same node).
            case enqueued
            /// Refused: as many nodes as the buffer limit have events pending.
            case dropped
            /// The sequence was finished already.
            case terminated
        }

        fileprivate let storage: Storage

        @discardableResult
        public func yield(_ event: PeerEvent) -> YieldResult {
            storage.yield(event)
        }

        /// Ends the sequence once the pending events are consumed. Later yields are ignored.
        public func finish() {
            storage.finish()
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate let storage: Storage

        public mutating func next() async -> PeerEvent? {
            await storage.next()
        }
    }

    fileprivate let storage: Storage

    /// A new sequence and the continuation that feeds it.
    /// - Parameter bufferLimit: the most node IDs with a pending event (at least 1).
    public static func makeStream(bufferLimit: Int = 4096) -> (events: PeerEvents, continuation: Continuation) {
        let storage = Storage(limit: bufferLimit)
        return (PeerEvents(storage: storage), Continuation(storage: storage))
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(storage: storage)
    }
}

private final class Storage: Sendable {
    private struct State {
        var queue: PeerEventQueue
        var waiter: CheckedContinuation<PeerEvent?, Never>?
        var finished = false
    }

    private let state: Mutex<State>

    init(limit: Int) {
        state = Mutex(State(queue: PeerEventQueue(limit: limit)))
    }

    func yield(_ event: PeerEvent) -> PeerEvents.Continuation.YieldResult {
        let (result, resume) = state.withLock { state -> (PeerEvents.Continuation.YieldResult, Resume?) in
            guard !state.finished else { return (.terminated, nil) }
            guard state.queue.push(event) else { return (.dropped, nil) }
            guard let waiter = state.waiter, let next = state.queue.pop() else { return (.enqueued, nil) }
            state.waiter = nil
            return (.enqueued, Resume(waiter: waiter, event: next))
        }
        resume?.run()
        return result
    }

    func finish() {
        let resume = state.withLock { state -> Resume? in
            state.finished = true
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            return Resume(waiter: waiter, event: nil)
        }
        resume?.run()
    }

    func next() async -> PeerEvent? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<PeerEvent?, Never>) in
                let resume = state.withLock { state -> Resume? in
                    if let event = state.queue.pop() { return Resume(waiter: continuation, event: event) }
                    if state.finished || Task.isCancelled { return Resume(waiter: continuation, event: nil) }
                    precondition(state.waiter == nil, "PeerEvents has a single consumer: next() awaited concurrently")
                    state.waiter = continuation
                    return nil
                }
                resume?.run()
            }
        } onCancel: {
            let resume = state.withLock { state -> Resume? in
                guard let waiter = state.waiter else { return nil }
                state.waiter = nil
                return Resume(waiter: waiter, event: nil)
            }
            resume?.run()
        }
    }

    /// A continuation to resume once the lock is released.
    private struct Resume {
        let waiter: CheckedContinuation<PeerEvent?, Never>
        let event: PeerEvent?

        func run() { waiter.resume(returning: event) }
    }
}
