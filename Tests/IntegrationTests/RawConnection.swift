import NIOCore
import NIOPosix
import ParleyCore
import ParleyLink
import ParleyServer
import ParleyTesting
import ParleyWire
import Synchronization

/// A bare TCP connection that speaks raw bytes: no keep-alive answers, no checks. It cuts what
/// the server sends into frames and records them, for tests that misbehave on purpose.
final class RawConnection: Sendable {
    let channel: any Channel
    /// Every frame the server sent; finished when the connection closes.
    let frames: Mailbox<Frame>
    private let nextRequestID = Mutex<UInt32>(1)

    private init(channel: any Channel, frames: Mailbox<Frame>) {
        self.channel = channel
        self.frames = frames
    }

    /// Connects in TLS (accepting whatever certificate the server shows: these tests are about
    /// what comes after), or in plaintext for a server started with `.insecurePlaintext`;
    /// `source` picks the local IP (another loopback address, say).
    static func connect(
        to address: ListeningAddress,
        from source: String? = nil,
        plaintext: Bool = false
    ) async throws -> RawConnection {
        let frames = Mailbox<Frame>()
        // Trust on first use from a file that never exists: any certificate is accepted.
        let verifier =
            plaintext
            ? nil
            : try ServerTrustVerifier(
                trust: .trustOnFirstUse(knownServersFile: "/nonexistent/parley-raw-connection-known-servers"),
                host: address.host,
                port: address.port
            )
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let source {
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
        }
        let channel =
            try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try verifier?.addHandlers(to: sync)
                    try sync.addHandler(ByteToMessageHandler(FrameDecoder(maximumFrameSize: 1 << 24)))
                    try sync.addHandler(RawFrameRecorder(frames: frames))
                }
            }
            .connect(host: address.host, port: address.port)
            .get()
        return RawConnection(channel: channel, frames: frames)
    }

    func send(bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    func send(_ frame: Frame) async throws {
        try await channel.writeAndFlush(frame.encoded())
    }

    func makeRequestID() -> UInt32 {
        nextRequestID.withLock { id in
            defer { id += 1 }
            return id
        }
    }

    /// Sends a request and waits for the frame that answers it (a response or an ERROR).
    func request(_ type: FrameType, _ meta: some WireMessage, payload: ByteBuffer = ByteBuffer()) async throws -> Frame
    {
        try await request(Frame(type: type, requestID: makeRequestID(), message: meta, payload: payload))
    }

    func request(_ frame: Frame) async throws -> Frame {
        try await send(frame)
        let id = frame.requestID
        return try await frames.wait(for: "the answer to \(frame.type) #\(id)") { frames, _ in
            frames.first { $0.requestID == id && ($0.type.isResponse || $0.type == .error) }
        }
    }

    /// Sends a PING and waits for its PONG: proves the server has accepted the connection
    /// (PINGs are answered even before HELLO).
    func ping() async throws {
        var ping = Parley_V1_Ping()
        ping.nonce = UInt64(makeRequestID())
        try await send(Frame(type: .ping, requestID: 0, message: ping))
        let nonce = ping.nonce
        _ = try await frames.wait(for: "the PONG") { frames, _ in
            frames.contains { $0.type == .pong && (try? $0.decodeMeta(as: Parley_V1_Ping.self).nonce) == nonce }
                ? true : nil
        }
    }

    /// HELLO, as a well-behaved client would.
    @discardableResult
    func hello() async throws -> Parley_V1_HelloOk {
        var hello = Parley_V1_Hello()
        hello.magic = WireProtocol.magic
        hello.minVersion = WireProtocol.version
        hello.maxVersion = WireProtocol.version
        hello.agent = "raw-test-connection"
        let answer = try await request(.hello, hello)
        guard answer.type == FrameType.hello.response else {
            throw WaitFailure("HELLO was answered with \(answer.type): \(ParleyError(errorFrame: answer))")
        }
        return try answer.decodeMeta()
    }

    /// Registers a user; returns its ID.
    func register(_ name: String, password: String = "secret") async throws -> UserID {
        var request = Parley_V1_RegisterRequest()
        request.info.userName = name
        request.password = password
        let answer = try await self.request(.register, request)
        guard answer.type == FrameType.register.response else {
            throw WaitFailure("REGISTER was answered with \(answer.type): \(ParleyError(errorFrame: answer))")
        }
        return UserID(try answer.decodeMeta(as: Parley_V1_LogonResponse.self).user.userID)
    }

    /// Waits until the server closed the connection; returns every frame it sent.
    @discardableResult
    func waitUntilClosed(timeout: Duration = .seconds(30)) async throws -> [Frame] {
        try await frames.wait(for: "the server to close the connection", timeout: timeout) { frames, finished in
            finished ? frames : nil
        }
    }

    /// The connection-level ERROR frames (request ID 0) received so far.
    var connectionErrors: [ParleyError] {
        frames.items.filter { $0.type == .error && $0.requestID == 0 }.map(ParleyError.init(errorFrame:))
    }

    func close() async {
        do {
            try await channel.close()
        } catch ChannelError.alreadyClosed {
            // The server closed it first.
        } catch {
            print("closing a raw connection failed: \(error)")
        }
    }
}

/// Records every frame and the end of the connection.
private final class RawFrameRecorder: ChannelInboundHandler {
    typealias InboundIn = Frame

    private let frames: Mailbox<Frame>

    init(frames: Mailbox<Frame>) {
        self.frames = frames
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        frames.append(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        frames.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset by the server after its fatal ERROR is expected; the frames stay recorded.
        context.close(promise: nil)
    }
}

extension Frame {
    /// Whether this is an ERROR frame that says the sender closes the connection next.
    var isFatalError: Bool {
        guard type == .error, let meta: Parley_V1_Error = try? decodeMeta() else { return false }
        return meta.fatal
    }
}
