import Foundation
import NIOCore
import ParleyCore
import ParleyLink
import ParleyWire
import Synchronization

/// What a peer proved and claimed at the start of a direct link.
struct VerifiedHello: Sendable, Hashable {
    var nodeID: ParleyNode.NodeID
    var publicKeyDER: [UInt8]
    /// The user the peer claimed and the node verified (nil: no claim).
    var userID: UserID?
    var userName: String
    var server: String
}

/// One direct link to another node, after TLS: its inputs, in order, for the node's task that
/// serves it, and request/answer correlation for PEER_MESSAGE and PEER_COMMAND.
final class DirectLink: Sendable {
    enum Input: Sendable {
        case authenticated(LinkAuthenticated)
        case frame(Frame)
        case closed
    }

    private struct State {
        var authenticated: LinkAuthenticated?
        var hello: VerifiedHello?
        var readiness: Result<VerifiedHello, ParleyError>?
        var readyWaiters: [CheckedContinuation<Result<VerifiedHello, ParleyError>, Never>] = []
        /// Requests waiting for their answers, by request ID: a waiting call's continuation or a
        /// windowed send's promise (``send(_:_:payload:timeout:)``).
        var pending: [UInt32: @Sendable (Result<Frame, ParleyError>) -> Void] = [:]
        var nextRequestID: UInt32 = 1
        var closed = false
    }

    let channel: any Channel
    let inputs: AsyncStream<Input>
    private let state = Mutex(State())

    init(channel: any Channel, inputs: AsyncStream<Input>) {
        self.channel = channel
        self.inputs = inputs
    }

    var authenticated: LinkAuthenticated? { state.withLock { $0.authenticated } }

    /// Not closed nor closing: a request sent on it can be answered.
    var isOpen: Bool { channel.isActive && !state.withLock { $0.closed } }
    var hello: VerifiedHello? { state.withLock { $0.hello } }

    func setAuthenticated(_ peer: LinkAuthenticated) { state.withLock { $0.authenticated = peer } }

    /// The peer's NODE_HELLO checked out: senders waiting for the link may use it.
    func markReady(_ hello: VerifiedHello) {
        let waiters = state.withLock { state in
            state.hello = hello
            return settle(&state, .success(hello))
        }
        for waiter in waiters { waiter.resume(returning: .success(hello)) }
    }

    /// The link will not become ready (refused, timed out, closed).
    func fail(_ error: ParleyError, closing: Bool = true) {
        let waiters = state.withLock { settle(&$0, .failure(error)) }
        for waiter in waiters { waiter.resume(returning: .failure(error)) }
        if closing { channel.close(promise: nil) }
    }

    private func settle(
        _ state: inout State,
        _ result: Result<VerifiedHello, ParleyError>
    ) -> [CheckedContinuation<Result<VerifiedHello, ParleyError>, Never>] {
        guard state.readiness == nil else { return [] }
        state.readiness = result
        defer { state.readyWaiters = [] }
        return state.readyWaiters
    }

    /// Waits until both NODE_HELLOs were exchanged and checked, at most `timeout`.
    func waitUntilReady(timeout: Duration) async throws(ParleyError) -> VerifiedHello {
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount.nanoseconds(timeout.nanoseconds)) { [self] in
            self.fail(ParleyError(code: .timedOut, message: "the direct link was not ready within \(timeout)"))
        }
        defer { timer.cancel() }
        let result = await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<VerifiedHello, ParleyError>? in
                if let readiness = state.readiness { return readiness }
                state.readyWaiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
        return try result.get()
    }

    /// Sends one PEER_MESSAGE and waits for its answer (PEER_MESSAGE_OK or ERROR), at most `timeout`.
    func request(_ meta: Parley_V1_PeerMessage, payload: [UInt8], timeout: Duration) async throws(ParleyError) {
        _ = try await request(.peerMessage, meta, payload: payload, timeout: timeout)
    }

    /// Sends one request of `type` and waits for its answer, at most `timeout`.
    ///
    /// - Returns: the answer frame (`type`'s response).
    /// - Throws: the peer's ERROR as a ``/ParleyCore/ParleyError``, `notConnected` when the link
    ///   closes first, `timedOut` after `timeout`.
    func request(
        _ type: FrameType,
        _ meta: some WireMessage,
        payload: [UInt8],
        timeout: Duration
    ) async throws(ParleyError) -> Frame {
        let result = await withCheckedContinuation { continuation in
            start(type, meta, payload: ByteBuffer(bytes: payload), timeout: timeout) {
                continuation.resume(returning: $0)
            }
        }
        return try result.get()
    }

    /// Sends one request of `type` now, without waiting: several can be in flight, written in
    /// the order of the calls; each future completes as ``request(_:_:payload:timeout:)`` returns.
    func send(
        _ type: FrameType,
        _ meta: some WireMessage,
        payload: ByteBuffer,
        timeout: Duration
    ) -> EventLoopFuture<Frame> {
        let promise = channel.eventLoop.makePromise(of: Frame.self)
        start(type, meta, payload: payload, timeout: timeout) { promise.completeWith($0.mapError { $0 as any Error }) }
        return promise.futureResult
    }

    private func start(
        _ type: FrameType,
        _ meta: some WireMessage,
        payload: ByteBuffer,
        timeout: Duration,
        completion: @escaping @Sendable (Result<Frame, ParleyError>) -> Void
    ) {
        let requestID = state.withLock { state -> UInt32? in
            guard !state.closed else { return nil }
            let id = state.nextRequestID
            state.nextRequestID = id == UInt32.max ? 1 : id + 1
            state.pending[id] = completion
            return id
        }
        guard let requestID else {
            completion(.failure(ParleyError(code: .notConnected, message: "the link closed")))
            return
        }
        let frame = Frame(type: type, requestID: requestID, message: meta, payload: payload)
        channel.writeAndFlush(frame).whenFailure { [self] error in
            self.complete(
                requestID,
                .failure(ParleyError(code: .notConnected, message: "writing to the link failed", cause: error))
            )
        }
        _ = channel.eventLoop.scheduleTask(in: TimeAmount.nanoseconds(timeout.nanoseconds)) { [self] in
            self.complete(
                requestID,
                .failure(ParleyError(code: .timedOut, message: "the peer did not acknowledge within \(timeout)"))
            )
        }
    }

    /// Completes the request `requestID`, once; later completions are ignored.
    func complete(_ requestID: UInt32, _ result: Result<Frame, ParleyError>) {
        let waiter = state.withLock { $0.pending.removeValue(forKey: requestID) }
        waiter?(result)
    }

    /// The link is gone: fails everything still waiting on it.
    func closed() {
        let error = ParleyError(code: .notConnected, message: "the direct link closed")
        let (waiters, pending) = state.withLock { state in
            state.closed = true
            let pending = state.pending
            state.pending = [:]
            return (settle(&state, .failure(error)), pending)
        }
        for waiter in waiters { waiter.resume(returning: .failure(error)) }
        for waiter in pending.values { waiter(.failure(error)) }
    }

    func write(_ frame: Frame) {
        channel.writeAndFlush(frame, promise: nil)
    }

    /// Sends a fatal ERROR and closes.
    func refuse(_ error: ParleyError) {
        fail(error, closing: false)
        let channel = self.channel
        channel.writeAndFlush(Frame.error(error, requestID: 0, fatal: true)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

/// The last handler of a direct link's pipeline: sends this node's NODE_HELLO once TLS is up and
/// hands every input to the link's serving task.
final class DirectLinkHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private let hello: Frame
    private let continuation: AsyncStream<DirectLink.Input>.Continuation

    init(hello: Frame, continuation: AsyncStream<DirectLink.Input>.Continuation) {
        self.hello = hello
        self.continuation = continuation
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let authenticated = event as? LinkAuthenticated {
            forward(.authenticated(authenticated), context: context)
            context.writeAndFlush(wrapOutboundOut(hello), promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        forward(.frame(unwrapInboundIn(data)), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.yield(.closed)
        continuation.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // TLS, framing and authentication errors were reported by the handlers that raised them;
        // a link in an unknown state is of no use.
        context.close(promise: nil)
    }

    private func forward(_ input: DirectLink.Input, context: ChannelHandlerContext) {
        if case .dropped = continuation.yield(input) {
            // The serving task is far behind: a peer that floods is not waited for.
            context.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension DirectLinkHandler: Sendable {}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
