import NIOCore
import NIOEmbedded
import ParleyCore
import ParleyLink
import ParleyWire
import Testing

@Suite("KeepAliveHandler")
struct KeepAliveHandlerTests {
    static let configuration = LinkConfiguration(
        maximumFrameSize: 4096,
        heartbeatInterval: .milliseconds(100),
        idleTimeout: .milliseconds(300)
    )

    /// An active channel with the full link pipeline, and an event recorder after it.
    private func makeChannel() throws -> (EmbeddedChannel, EventRecorder) {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addParleyLinkHandlers(configuration: Self.configuration)
        let recorder = EventRecorder()
        try channel.pipeline.syncOperations.addHandler(recorder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, recorder)
    }

    /// Every frame the channel wrote so far.
    private func writtenFrames(_ channel: EmbeddedChannel) throws -> [Frame] {
        var all = ByteBuffer()
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&buffer) }
        var decoder = FrameDecoder(maximumFrameSize: 1 << 20)
        var frames: [Frame] = []
        while let frame = try decoder.decode(buffer: &all) { frames.append(frame) }
        #expect(all.readableBytes == 0)
        return frames
    }

    @Test("a PING is answered with a PONG carrying the same nonce and is not passed on")
    func answersPing() throws {
        let (channel, recorder) = try makeChannel()
        var ping = Parley_V1_Ping()
        ping.nonce = 0xDEAD_BEEF_0102
        try channel.writeInbound(Frame(type: .ping, requestID: 9, message: ping).encoded())

        let frames = try writtenFrames(channel)
        #expect(frames.count == 1)
        let pong = try #require(frames.first)
        #expect(pong.type == .pong)
        #expect(pong.requestID == 9)
        #expect(try pong.decodeMeta(as: Parley_V1_Ping.self).nonce == 0xDEAD_BEEF_0102)
        #expect(recorder.frames.isEmpty)

        // Other frames pass through; PONGs are swallowed.
        try channel.writeInbound(Frame(type: .pong, requestID: 0, message: ping).encoded())
        try channel.writeInbound(Frame(type: .userExists, requestID: 5, meta: ByteBuffer()).encoded())
        #expect(recorder.frames.map(\.type) == [.userExists])
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    @Test("a quiet link sends PINGs and a silent peer is closed with IDLE_TIMEOUT")
    func heartbeatAndIdleTimeout() throws {
        // IdleStateHandler measures wall-clock time, which EmbeddedEventLoop cannot advance: fire
        // its events directly. (The integration tests run the real timers.)
        let (channel, recorder) = try makeChannel()
        channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.write)
        channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.write)
        let pings = try writtenFrames(channel)
        #expect(pings.map(\.type) == [.ping, .ping])
        #expect(pings.map(\.requestID) == [0, 0])
        let nonces = try pings.map { try $0.decodeMeta(as: Parley_V1_Ping.self).nonce }
        #expect(nonces[0] != nonces[1])
        #expect(channel.isActive)

        channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
        let frames = try writtenFrames(channel)
        #expect(frames.count == 1)
        let error = try #require(frames.first)
        #expect(error.type == .error)
        #expect(error.requestID == 0)
        #expect(ParleyError(errorFrame: error).code == .idleTimeout)
        #expect(try error.decodeMeta(as: Parley_V1_Error.self).fatal)
        #expect(!channel.isActive)
        #expect(recorder.sawIdleTimeout)
    }

    @Test("an oversized frame gets a fatal FRAME_TOO_LARGE and the link is closed")
    func framingErrorIsFatal() throws {
        let (channel, recorder) = try makeChannel()
        try channel.writeInbound(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF]))
        let frames = try writtenFrames(channel)
        #expect(frames.count == 1)
        let error = try #require(frames.first)
        #expect(error.type == .error)
        #expect(error.requestID == 0)
        #expect(ParleyError(errorFrame: error).code == .frameTooLarge)
        #expect(try error.decodeMeta(as: Parley_V1_Error.self).fatal)
        #expect(!channel.isActive)
        #expect(recorder.framingErrors.count == 1)
    }

    @Test("a frame shorter than its header gets a fatal PROTOCOL_VIOLATION")
    func shortFrameIsFatal() throws {
        let (channel, _) = try makeChannel()
        try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 3, 1, 2, 3]))
        let error = try #require(try writtenFrames(channel).first)
        #expect(ParleyError(errorFrame: error).code == .protocolViolation)
        #expect(!channel.isActive)
    }
}

/// Records what reaches the end of the link pipeline.
private final class EventRecorder: ChannelInboundHandler {
    typealias InboundIn = Frame

    var frames: [Frame] = []
    var sawIdleTimeout = false
    var framingErrors: [FrameDecodingError] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        frames.append(unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event as? LinkEvent {
        case .idleTimeout?: sawIdleTimeout = true
        case .framingError(let error)?: framingErrors.append(error)
        case nil: context.fireUserInboundEventTriggered(event)
        }
    }
}
