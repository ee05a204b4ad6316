import Synchronization

extension ParleyNode {
    /// The node's events, in order (``ParleyNode/events``). Iterate from one task.
    ///
    /// Received messages are exactly once to the application, across crashes of the process
    /// (kill -9 included): a message is recorded as seen and stored in the node inbox (in the
    /// registry, one SQLite transaction) before it is acknowledged to its sender or the server.
    /// It leaves the inbox when the application asks for the next event after it (or the
    /// iteration ends with the node), so the application is done with a message when it asks for
    /// the next one; a message still in the inbox when the process dies is delivered again, first
    /// thing, by the next node on the same data directory. The one window left for a duplicate
    /// is a crash after the application has handled a message and before it asks for the next
    /// one: an application that must not handle a message twice keeps ``/ParleyCore/Message/id``
    /// (unique per sender) with whatever it records, records before asking for the next, and
    /// checks its record for the messages that ``AsyncIterator/isRedelivery`` marks.
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
            var base: AsyncStream<EventQueue.Entry>.Iterator
            let queue: EventQueue
            /// The inbox entry of the message this iterator returned last: confirmed (removed
            /// from the inbox) when the application asks for the next event.
            var unconfirmed: Int64?
            /// The event returned last is a message handed over again at a start: one that the
            /// last run acknowledged and whose application did not ask for the next event after
            /// it. The application may have handled it before the crash; one that must not handle
            /// a message twice checks its own record for the message's ID (unique per sender).
            public private(set) var isRedelivery = false

            init(base: AsyncStream<EventQueue.Entry>.Iterator, queue: EventQueue) {
                self.base = base
                self.queue = queue
            }

            public mutating func next() async -> Event? {
                if let sequence = unconfirmed {
                    unconfirmed = nil
                    await queue.confirm(sequence)
                }
                return taken(await base.next())
            }

            public mutating func next(isolation actor: isolated (any Actor)?) async -> Event? {
                if let sequence = unconfirmed {
                    unconfirmed = nil
                    await queue.confirm(sequence)
                }
                return taken(await base.next(isolation: actor))
            }

            private mutating func taken(_ entry: EventQueue.Entry?) -> Event? {
                guard let entry else { return nil }
                queue.taken()
                unconfirmed = entry.inboxSequence
                isRedelivery = entry.isRedelivery
                return entry.event
            }
        }
    }
}

/// The node's event stream with a count of unread events, so producers can hold back (server
/// messages) or refuse (direct messages) instead of losing what was acknowledged.
final class EventQueue: Sendable {
    /// An event, and for a received message its entry in the node inbox.
    struct Entry: Sendable {
        var event: ParleyNode.Event
        var inboxSequence: Int64?
        /// Left in the inbox by a previous run.
        var isRedelivery = false
    }

    private struct State {
        var unread = 0
        var finished = false
        /// Producers waiting for the reader to make room, resumed in order.
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let limit: Int
    let stream: AsyncStream<Entry>
    /// Removes a message the application has taken from the node inbox.
    let confirm: @Sendable (Int64) async -> Void
    private let continuation: AsyncStream<Entry>.Continuation
    private let state = Mutex(State())

    init(limit: Int, confirm: @escaping @Sendable (Int64) async -> Void) {
        self.limit = limit
        self.confirm = confirm
        (stream, continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Whether fewer than `limit` events wait unread.
    var hasRoom: Bool { state.withLock { !$0.finished && $0.unread < limit } }

    /// Queues `event` unless `limit` events wait unread, or, with `pastLimit` (a message already
    /// stored in the node inbox), in any case; returns whether it was queued (false only at the
    /// limit, or after ``finish()``).
    @discardableResult
    func offer(
        _ event: ParleyNode.Event, inboxSequence: Int64? = nil, isRedelivery: Bool = false, pastLimit: Bool = false
    ) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.finished, pastLimit || state.unread < limit else { return false }
            state.unread += 1
            return true
        }
        guard accepted else { return false }
        continuation.yield(Entry(event: event, inboxSequence: inboxSequence, isRedelivery: isRedelivery))
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
