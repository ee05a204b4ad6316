import Synchronization

extension ParleyNode {
    /// The node's events, in order (``ParleyNode/events``). Iterate from one task.
    ///
    /// At most ``Configuration/unreadEventLimit`` events wait unread. Past that, messages stop being
    /// taken: the server's are left with the server (they come once the reader catches up), a
    /// direct one is refused unacknowledged (its sender sends it another way or later), and
    /// other events (peer and route changes) are dropped. No acknowledged message is lost.
    public struct Events: AsyncSequence, Sendable {
        public typealias Element = Event
        public typealias Failure = Never

        let queue: EventQueue

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(base: queue.stream.makeAsyncIterator(), queue: queue)
        }

        public struct AsyncIterator: AsyncIteratorProtocol {
            var base: AsyncStream<Event>.Iterator
            let queue: EventQueue

            public mutating func next() async -> Event? {
                let event = await base.next()
                if event != nil { queue.taken() }
                return event
            }

            public mutating func next(isolation actor: isolated (any Actor)?) async -> Event? {
                let event = await base.next(isolation: actor)
                if event != nil { queue.taken() }
                return event
            }
        }
    }
}

/// The node's event stream with a count of unread events, so producers can hold back (server
/// messages) or refuse (direct messages) instead of losing what was acknowledged.
final class EventQueue: Sendable {
    private struct State {
        var unread = 0
        var finished = false
        /// Producers waiting for the reader to make room, resumed in order.
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let limit: Int
    let stream: AsyncStream<ParleyNode.Event>
    private let continuation: AsyncStream<ParleyNode.Event>.Continuation
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
        (stream, continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Queues `event` unless `limit` events wait unread, or, with `pastLimit` (a message already
    /// taken from the server, which must not be lost), in any case; returns whether it was
    /// queued (false only at the limit, or after ``finish()``).
    @discardableResult
    func offer(_ event: ParleyNode.Event, pastLimit: Bool = false) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.finished, pastLimit || state.unread < limit else { return false }
            state.unread += 1
            return true
        }
        guard accepted else { return false }
        continuation.yield(event)
        return true
    }

    /// Returns once fewer than `limit` events wait unread (or the queue finished).
    func waitForRoom() async {
        await withCheckedContinuation { waiter in
            let ready = state.withLock { state -> Bool in
                if state.finished || state.unread < limit { return true }
                state.roomWaiters.append(waiter)
                return false
            }
            if ready { waiter.resume() }
        }
    }

    /// The reader took one event.
    func taken() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.unread = max(0, state.unread - 1)
            guard state.unread < limit else { return [] }
            defer { state.roomWaiters = [] }
            return state.roomWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func finish() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.finished = true
            defer { state.roomWaiters = [] }
            return state.roomWaiters
        }
        for waiter in waiters { waiter.resume() }
        continuation.finish()
    }
}
