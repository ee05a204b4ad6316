import NIOCore
import NIOEmbedded
import ParleyCore
import ParleyLink
import ParleyWire
import Testing

@Suite("LinkHandler")
struct LinkHandlerTests {
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

    @Test("a quiet link sends PINGs every heartbeat and a silent peer is closed at the idle timeout")
    func heartbeatAndIdleTimeout() throws {
        // The handler keeps the event loop's time: EmbeddedEventLoop's clock is advanced by hand.
        let (channel, recorder) = try makeChannel()
        let loop = channel.embeddedEventLoop
        loop.advanceTime(by: .milliseconds(99))
        #expect(try writtenFrames(channel).isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        loop.advanceTime(by: .milliseconds(100))
        let pings = try writtenFrames(channel)
        #expect(pings.map(\.type) == [.ping, .ping])
        #expect(pings.map(\.requestID) == [0, 0])
        let nonces = try pings.map { try $0.decodeMeta(as: Parley_V1_Ping.self).nonce }
        #expect(nonces == [1, 2])
        #expect(channel.isActive)

        loop.advanceTime(by: .milliseconds(99))  // 299 ms: the peer still has 1 ms
        #expect(try writtenFrames(channel).isEmpty)
        #expect(channel.isActive)
        loop.advanceTime(by: .milliseconds(1))
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

    @Test("what the application writes puts the next PING off; a flush of nothing does not")
    func writesPutPingsOff() throws {
        let (channel, _) = try makeChannel()
        let loop = channel.embeddedEventLoop
        loop.advanceTime(by: .milliseconds(60))
        channel.pipeline.flush()  // nothing written: still quiet since 0
        loop.advanceTime(by: .milliseconds(40))
        #expect(try writtenFrames(channel).map(\.type) == [.ping])  // at 100 ms
        loop.advanceTime(by: .milliseconds(50))
        try channel.writeAndFlush(Frame(type: .userExists, requestID: 1, meta: ByteBuffer())).wait()  // at 150 ms
        #expect(try writtenFrames(channel).map(\.type) == [.userExists])
        loop.advanceTime(by: .milliseconds(99))
        #expect(try writtenFrames(channel).isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(try writtenFrames(channel).map(\.type) == [.ping])  // at 250 ms
    }

    @Test("bytes from the peer put the idle timeout off")
    func readsPutTheIdleTimeoutOff() throws {
        let (channel, recorder) = try makeChannel()
        let loop = channel.embeddedEventLoop
        loop.advanceTime(by: .milliseconds(250))
        try channel.writeInbound(Frame(type: .pong, requestID: 0, meta: ByteBuffer()).encoded())
        loop.advanceTime(by: .milliseconds(299))  // 549 ms
        #expect(channel.isActive)
        loop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        #expect(recorder.sawIdleTimeout)
    }

    @Test("frames cut anywhere across reads, and several in one read, come out whole and in order")
    func framesAcrossReads() throws {
        let (channel, recorder) = try makeChannel()
        var stream = ByteBuffer()
        for id in UInt32(1)...5 {
            var frame = Frame(type: .userExists, requestID: id, meta: ByteBuffer(string: "meta \(id)"))
            frame.payload = ByteBuffer(repeating: UInt8(id), count: Int(id) * 7)
            var encoded = frame.encoded()
            stream.writeBuffer(&encoded)
        }
        // Reads of 1, 2, 3, ... bytes: every cut falls somewhere else in a frame.
        var size = 1
        while stream.readableBytes > 0 {
            let piece = stream.readSlice(length: min(size, stream.readableBytes))!
            try channel.writeInbound(piece)
            size += 1
        }
        #expect(recorder.frames.map(\.requestID) == [1, 2, 3, 4, 5])
        #expect(recorder.frames.map { String(buffer: $0.meta) } == (1...5).map { "meta \($0)" })
        #expect(recorder.frames.map(\.payload.readableBytes) == [7, 14, 21, 28, 35])
        #expect(channel.isActive)
    }

    @Test("a peer that closes inside a frame is reported as a truncated frame")
    func truncatedFrameAtClose() throws {
        let (channel, recorder) = try makeChannel()
        var encoded = Frame(type: .userExists, requestID: 1, meta: ByteBuffer(string: "cut")).encoded()
        try channel.writeInbound(encoded.readSlice(length: 9)!)
        #expect(recorder.frames.isEmpty)
        channel.pipeline.fireChannelInactive()
        #expect(recorder.framingErrors.map(\.reason) == [.truncatedFrame(bufferedBytes: 9)])
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

@Suite("LinkHandler, re-entrant reads")
struct LinkHandlerReentrancyTests {
    @Test("bytes that arrive while frames are handed on are decoded after them, in order")
    func reentrantRead() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addParleyLinkHandlers(configuration: LinkConfiguration())
        let third = Frame(type: .userExists, requestID: 3, meta: ByteBuffer()).encoded()
        let reentrant = ReadsMoreOnFirstFrame(more: third)
        try channel.pipeline.syncOperations.addHandler(reentrant)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()

        var both = Frame(type: .userExists, requestID: 1, meta: ByteBuffer()).encoded()
        var second = Frame(type: .userExists, requestID: 2, meta: ByteBuffer()).encoded()
        both.writeBuffer(&second)
        try channel.writeInbound(both)
        #expect(reentrant.requestIDs == [1, 2, 3])
    }
}

/// On the first frame, feeds the pipeline more bytes from the start while that frame is being
/// handed on (as a handler whose read completes synchronously would).
private final class ReadsMoreOnFirstFrame: ChannelInboundHandler {
    typealias InboundIn = Frame
    let more: ByteBuffer
    var requestIDs: [UInt32] = []

    init(more: ByteBuffer) { self.more = more }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        requestIDs.append(unwrapInboundIn(data).requestID)
        if requestIDs.count == 1 {
            context.pipeline.syncOperations.fireChannelRead(NIOAny(more))
        }
    }
}
