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

/// One direct link to another node, after TLS: its frames, in order and with backpressure, for
/// the node's task that serves it, and request/answer correlation (``/ParleyLink/RequestTable``)
/// for PEER_MESSAGE, PEER_COMMAND and PEER_TRANSFER_*.
///
/// The frames come through an `NIOAsyncChannel`: when the serving task is behind, the channel
/// stops reading from the socket (the peer's writes wait in its kernel buffers and its own
/// pending writes) instead of buffering without end or dropping the link. Answers to this node's
/// requests do not wait in that line: ``DirectLinkHandler`` hands them to the request table on
/// the event loop.
final class DirectLink: RequestSending {
    private struct State {
        var authenticated: LinkAuthenticated?
        var hello: VerifiedHello?
        var readiness: Result<VerifiedHello, ParleyError>?
        var readyWaiters: [CheckedContinuation<Result<VerifiedHello, ParleyError>, Never>] = []
        var closed = false
    }

    /// How many frames the serving task may have waiting before the link stops reading.
    static let backpressure = NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark(
        lowWatermark: 8,
        highWatermark: 64
    )

    let channel: any Channel
    /// The frames the serving task handles (requests, NODE_HELLO, connection-level ERRORs),
    /// read only as fast as it handles them.
    private let frames: NIOAsyncChannel<Frame, Frame>
    /// This node's requests waiting for their answers.
    let requests: RequestTable
    private let state = Mutex(State())

    private init(channel: any Channel, frames: NIOAsyncChannel<Frame, Frame>) {
        self.channel = channel
        self.frames = frames
        self.requests = RequestTable(eventLoop: channel.eventLoop) { _, timeout in
            ParleyError(code: .timedOut, message: "the peer did not acknowledge within \(timeout)")
        }
    }

    /// Completes a direct link's pipeline, after the node link handlers
    /// (``/ParleyLink/NodeLinkRole``): sends `hello` once TLS is up, and serves the frames as an
    /// `NIOAsyncChannel`. On the channel's event loop.
    static func install(on channel: any Channel, hello: Frame) throws -> DirectLink {
        let operations = channel.pipeline.syncOperations
        let handler = DirectLinkHandler(hello: hello)
        try operations.addHandler(handler)
        let frames = try NIOAsyncChannel<Frame, Frame>(
            wrappingChannelSynchronously: channel,
            configuration: .init(backPressureStrategy: backpressure)
        )
        let link = DirectLink(channel: channel, frames: frames)
        handler.link = link
        return link
    }

    /// Hands the link's frames to `handle` one at a time, in order, until the link closes or
    /// fails; then closes it. The link reads from the peer only as fast as `handle` returns.
    func serveFrames(_ handle: (Frame) async -> Void) async throws {
        try await frames.executeThenClose { inbound, _ in
            for try await frame in inbound { await handle(frame) }
        }
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
        try await requestFrame(type, meta, payload: ByteBuffer(bytes: payload), timeout: timeout)
    }

    func writeFailure(_ type: FrameType) -> @Sendable (any Error) -> ParleyError {
        { error in ParleyError(code: .notConnected, message: "writing to the link failed", cause: error) }
    }

    /// The link is gone: fails everything still waiting on it. On the channel's event loop.
    /// The link closed, or is closing for `error`: whatever waits fails with it.
    func closed(_ error: ParleyError = ParleyError(code: .notConnected, message: "the direct link closed")) {
        requests.close(error)
        let waiters = state.withLock { state in
            state.closed = true
            return settle(&state, .failure(error))
        }
        for waiter in waiters { waiter.resume(returning: .failure(error)) }
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

/// Sits before a direct link's `NIOAsyncChannel`: notes the authenticated peer and sends this
/// node's NODE_HELLO once TLS is up, completes this node's requests with their answers on the
/// event loop (they never wait behind the frames the serving task has not handled yet), and
/// fails whatever still waits when the link closes.
final class DirectLinkHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias InboundOut = Frame
    typealias OutboundOut = Frame

    private let hello: Frame
    /// Set by ``DirectLink/install(on:hello:)`` right after the handler joins the pipeline.
    var link: DirectLink?

    init(hello: Frame) {
        self.hello = hello
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let authenticated = event as? LinkAuthenticated {
            link?.setAuthenticated(authenticated)
            context.writeAndFlush(wrapOutboundOut(hello), promise: nil)
        } else if case .idleTimeout? = event as? LinkEvent {
            // The peer is silent: what waits on it times out, as it would at its own deadline,
            // rather than failing as on a link that merely closed (which a send tries again at
            // once on a fresh link).
            link?.closed(ParleyError(code: .timedOut, message: "the peer sent nothing within the peer timeout"))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        // An answer (a response, or an ERROR naming a request) is for this node's request table;
        // one nobody waits for any more (late, after its timeout) is dropped.
        if frame.requestID != 0, frame.type.isResponse || frame.type == .error {
            link?.requests.answer(frame)
            return
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        link?.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // TLS, framing and authentication errors were reported by the handlers that raised them;
        // a link in an unknown state is of no use.
        context.close(promise: nil)
        context.fireErrorCaught(error)
    }
}

@available(*, unavailable)
extension DirectLinkHandler: Sendable {}
