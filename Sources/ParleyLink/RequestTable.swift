package import NIOCore
package import ParleyCore
package import ParleyWire

/// The requests one link has in flight, waiting for their answers: one table per channel, owned
/// by the channel's event loop (no lock), shared by the client's connection to the server and by
/// a node's direct links.
///
/// ``send(_:on:timeout:writeFailure:)`` may be called from any thread: on the event loop it
/// allocates the request ID (never 0, never one still in use, wrapping after `UInt32.max`),
/// keeps the request's promise and writes the frame. The promise completes exactly once: with
/// its answer (``answer(_:)``; an ERROR answer fails it), when writing fails, when the table
/// closes (``close(_:)``: every request fails with the close reason, and so does every later
/// one), or at its deadline. Deadlines are swept by one repeating task per table, which runs
/// only while requests are pending: no timer per request.
package final class RequestTable: Sendable {
    /// The error a request fails with when it got no answer in time, from its frame type and timeout.
    package typealias TimeoutError = @Sendable (FrameType, Duration) -> ParleyError

    private struct Pending {
        var promise: EventLoopPromise<Frame>
        var type: FrameType
        var timeout: Duration
        var deadline: NIODeadline
    }

    private struct State {
        var pending: [UInt32: Pending] = [:]
        var requestIDs = RequestIDs()
        var closedBy: ParleyError?
        var sweeper: RepeatedTask?
    }

    /// The event loop that owns the table.
    package let eventLoop: any EventLoop
    private let sweepInterval: TimeAmount
    private let timeoutError: TimeoutError
    private let state: NIOLoopBoundBox<State>

    /// - Parameters:
    ///   - eventLoop: The event loop of the channel the requests go out on.
    ///   - sweepInterval: How often expired requests are looked for; a request fails at most
    ///     this long after its deadline.
    ///   - timeoutError: The error of a request that got no answer in time.
    package init(
        eventLoop: any EventLoop,
        sweepInterval: TimeAmount = .milliseconds(100),
        timeoutError: @escaping TimeoutError = { type, timeout in
            ParleyError(code: .timedOut, message: "\(type) got no answer within \(timeout)")
        }
    ) {
        self.eventLoop = eventLoop
        self.sweepInterval = sweepInterval
        self.timeoutError = timeoutError
        self.state = .makeBoxSendingValue(State(), eventLoop: eventLoop)
    }

    /// Sends `frame` as a new request (its request ID is replaced) and returns its answer.
    ///
    /// - Parameters:
    ///   - channel: The channel to write on; its event loop must be the table's.
    ///   - timeout: How long the answer may take.
    ///   - writeFailure: The error of a request whose frame could not be written.
    /// - Returns: The answer frame; an ERROR answer fails the future with its
    ///   ``/ParleyCore/ParleyError``.
    package func send(
        _ frame: Frame,
        on channel: any Channel,
        timeout: Duration,
        writeFailure: @escaping @Sendable (any Error) -> ParleyError
    ) -> EventLoopFuture<Frame> {
        let promise = eventLoop.makePromise(of: Frame.self)
        onEventLoop { [self] in
            let requestID: UInt32
            switch register(frame.type, promise: promise, timeout: timeout) {
            case .success(let id): requestID = id
            case .failure(let error):
                promise.fail(error)
                return
            }
            var request = frame
            request.requestID = requestID
            channel.writeAndFlush(request).whenFailure { [self] error in
                complete(requestID, with: .failure(writeFailure(error)))
            }
        }
        return promise.futureResult
    }

    /// Sends `frame` as a new request and waits for its answer
    /// (``send(_:on:timeout:writeFailure:)``); a cancelled task stops waiting and its request
    /// fails with `cancelled`.
    ///
    /// - Returns: The answer frame.
    /// - Throws: The peer's ERROR, the close reason, `writeFailure`'s error, the timeout error,
    ///   or `cancelled`.
    package func request(
        _ frame: Frame,
        on channel: any Channel,
        timeout: Duration,
        writeFailure: @escaping @Sendable (any Error) -> ParleyError
    ) async throws(ParleyError) -> Frame {
        let answer = send(frame, on: channel, timeout: timeout, writeFailure: writeFailure)
        do {
            return try await withTaskCancellationHandler {
                try await answer.get()
            } onCancel: {
                cancel(answer, with: ParleyError(code: .cancelled, message: "\(frame.type) was cancelled"))
            }
        } catch let error as ParleyError {
            throw error
        } catch {
            throw ParleyError(code: .internalError, message: "\(frame.type) failed", cause: error)
        }
    }

    /// Registers a request on the event loop: its ID, or the close reason.
    private func register(
        _ type: FrameType,
        promise: EventLoopPromise<Frame>,
        timeout: Duration
    ) -> Result<UInt32, ParleyError> {
        if let closedBy = state.value.closedBy { return .failure(closedBy) }
        var requestIDs = state.value.requestIDs
        let id = requestIDs.allocate { state.value.pending[$0] != nil }
        state.value.requestIDs = requestIDs
        let deadline = eventLoop.now + TimeAmount(timeout)
        state.value.pending[id] = Pending(promise: promise, type: type, timeout: timeout, deadline: deadline)
        if state.value.sweeper == nil {
            state.value.sweeper = eventLoop.scheduleRepeatedTask(
                initialDelay: sweepInterval,
                delay: sweepInterval
            ) { [self] _ in sweep() }
        }
        return .success(id)
    }

    /// Completes the request an answer (a response or an ERROR) is for; on the event loop.
    ///
    /// - Returns: false when no request waits for it (a late answer, or a stray one): ignored.
    @discardableResult
    package func answer(_ frame: Frame) -> Bool {
        guard frame.requestID != 0 else { return false }
        if frame.type == .error {
            return complete(frame.requestID, with: .failure(ParleyError(errorFrame: frame)))
        }
        return complete(frame.requestID, with: .success(frame))
    }

    /// Completes request `requestID` once, if it still waits; on the event loop.
    @discardableResult
    package func complete(_ requestID: UInt32, with result: Result<Frame, ParleyError>) -> Bool {
        guard let pending = state.value.pending.removeValue(forKey: requestID) else { return false }
        stopSweeperIfIdle()
        pending.promise.completeWith(result.mapError { $0 as any Error })
        return true
    }

    /// Fails the request whose answer is `future` (``send(_:on:timeout:writeFailure:)``), if it
    /// still waits: a caller that stopped waiting. Callable from any thread.
    package func cancel(_ future: EventLoopFuture<Frame>, with error: ParleyError) {
        onEventLoop { [self] in
            guard let id = state.value.pending.first(where: { $0.value.promise.futureResult === future })?.key
            else { return }
            complete(id, with: .failure(error))
        }
    }

    /// The link is gone: fails every waiting request and every later one with `error`; on the
    /// event loop. Only the first close counts.
    package func close(_ error: ParleyError) {
        guard state.value.closedBy == nil else { return }
        state.value.closedBy = error
        let pending = state.value.pending
        state.value.pending = [:]
        stopSweeperIfIdle()
        for request in pending.values { request.promise.fail(error) }
    }

    /// How many requests wait for their answers; on the event loop.
    package var count: Int { state.value.pending.count }

    /// Whether the deadline sweeper is scheduled (only while requests wait); on the event loop.
    package var isSweeping: Bool { state.value.sweeper != nil }

    /// Runs `body` on the event loop: at once when called there, else as the loop's next task
    /// (in the order of the calls, as the channel's own writes).
    private func onEventLoop(_ body: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop { body() } else { eventLoop.execute(body) }
    }

    private func sweep() {
        let now = eventLoop.now
        let expired = state.value.pending.filter { $0.value.deadline <= now }
        for (id, request) in expired {
            complete(id, with: .failure(timeoutError(request.type, request.timeout)))
        }
        stopSweeperIfIdle()
    }

    private func stopSweeperIfIdle() {
        guard state.value.pending.isEmpty, let sweeper = state.value.sweeper else { return }
        sweeper.cancel()
        state.value.sweeper = nil
    }
}

/// A link whose requests go through a ``RequestTable``: the client's connection to the server,
/// a node's direct link.
package protocol RequestSending: Sendable {
    /// The channel the requests are written on.
    var channel: any Channel { get }
    /// The requests waiting for their answers, on `channel`'s event loop.
    var requests: RequestTable { get }
    /// The error of a request of `type` whose frame could not be written.
    func writeFailure(_ type: FrameType) -> @Sendable (any Error) -> ParleyError
}

extension RequestSending {
    /// Writes a request at once and returns its answer as a future, so requests one task sends
    /// one after the other go out in that order while their answers are awaited later (windowed
    /// file transfers). An ERROR answer fails the future.
    package func send(
        _ type: FrameType,
        _ meta: some WireMessage,
        payload: ByteBuffer,
        timeout: Duration
    ) -> EventLoopFuture<Frame> {
        requests.send(
            Frame(type: type, requestID: 0, message: meta, payload: payload),
            on: channel,
            timeout: timeout,
            writeFailure: writeFailure(type)
        )
    }

    /// Sends a request and waits for its answer, at most `timeout`.
    ///
    /// - Returns: The answer frame.
    /// - Throws: The peer's ERROR as a ``/ParleyCore/ParleyError``; the close reason when the
    ///   link closes first; `timedOut` after `timeout`; `cancelled` when the task is cancelled.
    package func requestFrame(
        _ type: FrameType,
        _ meta: some WireMessage,
        payload: ByteBuffer = ByteBuffer(),
        timeout: Duration
    ) async throws(ParleyError) -> Frame {
        try await requests.request(
            Frame(type: type, requestID: 0, message: meta, payload: payload),
            on: channel,
            timeout: timeout,
            writeFailure: writeFailure(type)
        )
    }
}

/// Request IDs in turn: never 0 (which names no request), never one still in use, wrapping
/// around after `UInt32.max`.
package struct RequestIDs: Sendable {
    /// The ID tried first by the next ``allocate(isInUse:)``.
    package var next: UInt32

    package init(next: UInt32 = 1) {
        self.next = next
    }

    /// The next free ID.
    ///
    /// - Parameter isInUse: Whether an ID is still held by a request; there must be a free one.
    package mutating func allocate(isInUse: (UInt32) -> Bool) -> UInt32 {
        var id = next
        while id == 0 || isInUse(id) { id &+= 1 }
        next = id &+ 1
        return id
    }
}
