import NIOCore
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Synchronization

/// A fake server that answers HELLO and then does what a test's script says, to put a real
/// client into situations a correct server rarely produces on demand.
final class ScriptedServer: Sendable {
    enum Action: Sendable {
        case send(Frame)
        case close
    }

    /// Decides what to do with a frame (not HELLO) on the `connection`-th connection (from 0).
    typealias Script = @Sendable (_ frame: Frame, _ connection: Int) -> [Action]

    let address: ListeningAddress

    /// A client of this fake server: it speaks plaintext.
    var clientConfiguration: ParleyClient.Configuration {
        var configuration = ParleyClient.Configuration(host: address.host, port: address.port)
        configuration.security = .insecurePlaintext
        return configuration
    }
    /// Every frame received after HELLO, with the number of its connection.
    let received: Mailbox<(connection: Int, frame: Frame)>
    private let channel: any Channel

    private init(address: ListeningAddress, received: Mailbox<(connection: Int, frame: Frame)>, channel: any Channel) {
        self.address = address
        self.received = received
        self.channel = channel
    }

    /// - Parameter hangsUp: close every connection as soon as it is accepted, before HELLO.
    static func start(hangsUp: Bool = false, _ script: @escaping Script) async throws -> ScriptedServer {
        let received = Mailbox<(connection: Int, frame: Frame)>()
        let connections = Mutex(0)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let index = connections.withLock { count in
                    defer { count += 1 }
                    return count
                }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(FrameDecoder(maximumFrameSize: 1 << 20)))
                    try sync.addHandler(FrameEncoder())
                    try sync.addHandler(
                        ScriptedConnection(index: index, hangsUp: hangsUp, script: script, received: received)
                    )
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let address = ListeningAddress(host: "127.0.0.1", port: channel.localAddress?.port ?? 0)
        return ScriptedServer(address: address, received: received, channel: channel)
    }

    func stop() async {
        do {
            try await channel.close()
        } catch {
            print("closing the scripted server failed: \(error)")
        }
    }
}

private final class ScriptedConnection: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private let index: Int
    private let hangsUp: Bool
    private let script: ScriptedServer.Script
    private let received: Mailbox<(connection: Int, frame: Frame)>

    init(
        index: Int,
        hangsUp: Bool,
        script: @escaping ScriptedServer.Script,
        received: Mailbox<(connection: Int, frame: Frame)>
    ) {
        self.index = index
        self.hangsUp = hangsUp
        self.script = script
        self.received = received
    }

    func channelActive(context: ChannelHandlerContext) {
        if hangsUp {
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard frame.type != .hello else {
            var ok = Parley_V1_HelloOk()
            ok.version = WireProtocol.version
            ok.maxFrameSize = 1 << 20
            ok.heartbeatIntervalMs = 30_000
            ok.idleTimeoutMs = 90_000
            context.writeAndFlush(
                wrapOutboundOut(Frame(type: FrameType.hello.response, requestID: frame.requestID, message: ok)),
                promise: nil
            )
            return
        }
        received.append((index, frame))
        for action in script(frame, index) {
            switch action {
            case .send(let frame):
                context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
            case .close:
                context.close(promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
