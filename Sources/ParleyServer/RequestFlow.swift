import DequeModule
import ParleyWire

/// What one connection may make the server hold: backpressure by not reading
/// (docs/PROTOCOL.md section 13.3).
///
/// A frame is handled at once only while nothing waits before it, no session-changing request
/// is being processed, fewer than the limit of requests are unanswered and the connection's
/// outbound queue is under its limit. Otherwise it waits in a queue, and the handler stops
/// reading from the socket until the queue is empty again: the queue never holds more than what
/// one read delivered, and a client that does not read its answers stops being read.
///
/// A pure value: the connection handler feeds it events and carries out what it returns.
struct RequestFlow {
    // Stored narrow and smallest last: a server holds one per connection.

    /// Made at the first frame that has to wait: most connections never need it. A `Deque` is
    /// one reference (a `CircularBuffer` three words).
    private var queued: Deque<Frame>?
    private var unansweredCount: Int32 = 0
    private var queryCount: Int32 = 0
    private let unansweredLimit: Int32
    private let queryLimit: Int32
    /// A session-changing request (REGISTER, LOGON...) is being processed.
    private(set) var busy = false
    /// The connection's outbound queue is under its limit.
    private(set) var writable = true

    /// Requests handled but not answered yet (queries off the loop, messages being stored).
    var unanswered: Int { Int(unansweredCount) }
    /// Of those, queries running on the shared blocking pool.
    var queries: Int { Int(queryCount) }
    var maximumUnanswered: Int { Int(unansweredLimit) }
    var maximumQueries: Int { Int(queryLimit) }

    init(maximumUnanswered: Int, maximumQueries: Int) {
        self.unansweredLimit = Int32(clamping: max(maximumUnanswered, 1))
        self.queryLimit = Int32(clamping: max(maximumQueries, 1))
    }

    /// Frames waiting to be handled.
    var queuedCount: Int { queued?.count ?? 0 }

    private var nothingQueued: Bool { queued?.isEmpty ?? true }

    /// Whether a new frame may be handled now.
    private var mayHandle: Bool {
        !busy && writable && unansweredCount < unansweredLimit && queryCount < queryLimit
    }

    /// Whether the handler may ask the socket for more bytes.
    var mayRead: Bool { nothingQueued && mayHandle }

    /// A frame arrived: returns it if it is to be handled now; otherwise it waits.
    mutating func received(_ frame: Frame) -> Frame? {
        guard nothingQueued, mayHandle else {
            queued.append(frame, orMakeWith: 4)
            return nil
        }
        return frame
    }

    /// The next waiting frame to handle, if one may be handled now.
    mutating func next() -> Frame? {
        guard mayHandle, !nothingQueued else { return nil }
        return queued?.removeFirst()
    }

    /// A request was handed to work that answers it later.
    mutating func started(query: Bool) {
        unansweredCount += 1
        if query { queryCount += 1 }
    }

    /// A request started with ``started(query:)`` was answered.
    mutating func answered(query: Bool) {
        unansweredCount = max(unansweredCount - 1, 0)
        if query { queryCount = max(queryCount - 1, 0) }
    }

    mutating func sessionChangeStarted() { busy = true }
    mutating func sessionChangeEnded() { busy = false }

    mutating func writabilityChanged(_ writable: Bool) { self.writable = writable }

    /// The connection is closing: what waits is dropped, never handled.
    mutating func close() {
        queued = nil
    }
}

extension Optional {
    /// Appends `element` to the buffer, making one with room for `capacity` first if there is none.
    fileprivate mutating func append<Element>(_ element: Element, orMakeWith capacity: Int)
    where Wrapped == Deque<Element> {
        if self == nil { self = Deque(minimumCapacity: capacity) }
        self!.append(element)
    }
}
