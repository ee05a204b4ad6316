import Foundation
import NIOCore
import NIOPosix
import ParleyCore
import ParleyLink
import ParleyWire
import Synchronization

/// One TCP connection to the server: request/answer correlation (a
/// ``/ParleyLink/RequestTable`` on the channel's event loop) and the close reason.
final class ClientConnection: RequestSending {
    private struct State {
        var closedReason: ParleyError?
        var isClosed = false
        var closeWaiters: [CheckedContinuation<ParleyError?, Never>] = []
        /// The server's fatal ERROR, kept as the reason once the socket closes.
        var fatalError: ParleyError?
        /// The server answered through the link, so the TLS handshake (if any) is complete.
        var linkEstablished = false
    }

    let channel: any Channel
    /// Checks the server's certificate; nil on a plaintext connection.
    let trustVerifier: ServerTrustVerifier?
    private let state = Mutex(State())
    /// The requests waiting for their answers.
    let requests: RequestTable
    private let pendingAcks = Mutex<(refs: [Parley_V1_MessageRef], scheduled: Bool)>(([], false))
    /// Filled in by the HELLO answer.
    let serverInfo = Mutex<Parley_V1_HelloOk?>(nil)

    init(channel: any Channel, trustVerifier: ServerTrustVerifier?) {
        self.channel = channel
        self.trustVerifier = trustVerifier
        self.requests = RequestTable(eventLoop: channel.eventLoop)
    }

    /// The server answered HELLO: the link works, and a server seen for the first time is
    /// remembered (trust on first use).
    ///
    /// - Returns: the fingerprint remembered, on a first use.
    func establish() throws(ParleyError) -> CertificateFingerprint? {
        state.withLock { $0.linkEstablished = true }
        do {
            return try trustVerifier?.recordFirstUse()
        } catch {
            throw ParleyError(code: .internalError, message: "cannot remember the server's certificate", cause: error)
        }
    }

    /// An error on the channel: before the link works it is a TLS failure, which becomes the
    /// close reason (a refused certificate explains itself).
    func transportFailed(_ error: any Error) {
        guard let trustVerifier else { return }
        state.withLock { state in
            guard !state.linkEstablished, state.fatalError == nil else { return }
            state.fatalError = trustVerifier.explain(error)
        }
    }

    /// Sends a request and waits for its answer.
    ///
    /// - Throws: the server's ``ParleyError``; `notConnected` if the connection closes first;
    ///   `timedOut` after `timeout`.
    func request<M: WireMessage>(
        _ type: FrameType,
        _ meta: some WireMessage,
        payload: ByteBuffer = ByteBuffer(),
        timeout: Duration,
        as: M.Type = M.self
    ) async throws(ParleyError) -> M {
        let response = try await requestFrame(type, meta, payload: payload, timeout: timeout)
        guard response.type == type.response else {
            throw ParleyError(code: .protocolViolation, message: "expected \(type.response), got \(response.type)")
        }
        return try response.decodeMeta()
    }

    static let lost = ParleyError(code: .notConnected, message: "the connection to the server was lost")

    /// The error of a request of `type` that could not be written.
    func writeFailure(_ type: FrameType) -> @Sendable (any Error) -> ParleyError {
        { [self] error in
            // A failed TLS handshake fails the write too: its explanation is the better reason.
            state.withLock { $0.fatalError }
                ?? ParleyError(code: .notConnected, message: "could not send \(type)", cause: error)
        }
    }

    /// True once the socket has closed (``ParleyClient/run()`` may not have noticed yet).
    var isClosed: Bool { state.withLock { $0.isClosed } }

    /// Delivers an answer (a response or an ERROR) to the request waiting for it, if any; on
    /// the channel's event loop.
    func answer(_ frame: Frame) {
        requests.answer(frame)
    }

    /// The server sent a fatal error; it becomes the close reason.
    func recordFatal(_ error: ParleyError) {
        state.withLock { $0.fatalError = error }
    }

    /// The socket closed: fail every waiting request and wake ``waitUntilClosed()``; on the
    /// channel's event loop.
    func closed() {
        let (waiters, reason) = state.withLock { state in
            state.isClosed = true
            let reason = state.fatalError ?? Self.lost
            state.closedReason = reason
            defer { state.closeWaiters = [] }
            return (state.closeWaiters, reason)
        }
        requests.close(reason)
        for waiter in waiters { waiter.resume(returning: reason) }
    }

    /// Returns once the connection is closed, with the reason.
    func waitUntilClosed() async -> ParleyError? {
        await withCheckedContinuation { continuation in
            let reason = state.withLock { state -> ParleyError?? in
                guard state.isClosed else {
                    state.closeWaiters.append(continuation)
                    return nil
                }
                return .some(state.closedReason)
            }
            if let reason { continuation.resume(returning: reason) }
        }
    }

    func close() {
        channel.close(promise: nil)
    }

    /// Queues an acknowledgement; all acknowledgements of one event-loop tick go in one frame.
    func acknowledge(_ message: Message) {
        var ref = Parley_V1_MessageRef()
        ref.sender = message.sender.rawValue
        ref.messageID = message.id.rawValue
        let schedule = pendingAcks.withLock { acks -> Bool in
            acks.refs.append(ref)
            defer { acks.scheduled = true }
            return !acks.scheduled
        }
        guard schedule else { return }
        channel.eventLoop.execute { [self] in
            let refs = pendingAcks.withLock { acks in
                defer { acks = ([], false) }
                return acks.refs
            }
            var request = Parley_V1_AckMessagesRequest()
            request.messages = refs
            channel.writeAndFlush(Frame(type: .ackMessages, requestID: 0, message: request), promise: nil)
        }
    }

    /// Opens a TCP connection with the Parley pipeline; `onFrame` gets every frame that is not
    /// an answer to a request.
    static func connect(
        host: String,
        port: Int,
        configuration: ParleyClient.Configuration,
        group: any EventLoopGroup,
        onEvent: @escaping @Sendable (Frame, ClientConnection) -> Void
    ) async throws -> ClientConnection {
        let link = LinkConfiguration(maximumFrameSize: configuration.maximumFrameSize)
        let box = Mutex<ClientConnection?>(nil)
        let verifier: ServerTrustVerifier?
        switch configuration.security {
        case .tls(let trust):
            do {
                verifier = try ServerTrustVerifier(trust: trust, host: host, port: port)
            } catch {
                throw ParleyError(code: .serverNotTrusted, message: "\(error)", cause: error)
            }
        case .insecurePlaintext:
            verifier = nil
        }
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(
                TimeAmount.nanoseconds(Int64(configuration.retry.connectTimeout.wireMilliseconds) * 1_000_000)
            )
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = ClientConnection(channel: channel, trustVerifier: verifier)
                    box.withLock { $0 = connection }
                    try verifier?.addHandlers(to: channel.pipeline.syncOperations)
                    try channel.pipeline.syncOperations.addParleyLinkHandlers(configuration: link)
                    try channel.pipeline.syncOperations.addHandler(
                        ClientFrameHandler(connection: connection, onEvent: onEvent)
                    )
                }
            }
            .connect(host: host, port: port)
            .get()
        guard let connection = box.withLock({ $0 }) else {
            channel.close(promise: nil)
            throw ParleyError(code: .internalError, message: "the connection was not set up")
        }
        // Connecting to a loopback port with no listener can, rarely, connect the socket to
        // itself (TCP simultaneous open) when the kernel picks that same port as the local one.
        // That is no server: drop it at once, which also frees the port for the server.
        if let local = channel.localAddress, let remote = channel.remoteAddress, local == remote {
            // Close with a reset: a normal close would leave the port in TIME_WAIT, and a server
            // restarting on that port could not bind it for a minute.
            if let provider = channel as? any SocketOptionProvider {
                do {
                    try await provider.setSoLinger(NIOLinger(l_onoff: 1, l_linger: 0)).get()
                } catch {
                    // Still close; at worst the port stays in TIME_WAIT.
                }
            }
            channel.close(promise: nil)
            throw ParleyError(
                code: .notConnected, message: "no server at \(host):\(port) (the socket connected to itself)")
        }
        return connection
    }
}

/// Routes answers to waiting requests and everything else to the client.
final class ClientFrameHandler: ChannelInboundHandler {
    typealias InboundIn = Frame

    private let connection: ClientConnection
    private let onEvent: @Sendable (Frame, ClientConnection) -> Void

    init(connection: ClientConnection, onEvent: @escaping @Sendable (Frame, ClientConnection) -> Void) {
        self.connection = connection
        self.onEvent = onEvent
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if frame.requestID != 0, frame.type.isResponse || frame.type == .error {
            connection.answer(frame)
            return
        }
        // Request ID 0 also answers a failed request that was sent with ID 0 (fatal = false):
        // only a fatal ERROR explains why the connection ends.
        if frame.type == .error, (try? frame.decodeMeta(as: Parley_V1_Error.self))?.fatal == true {
            connection.recordFatal(ParleyError(errorFrame: frame))
        }
        onEvent(frame, connection)
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.transportFailed(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ClientFrameHandler: Sendable {}
