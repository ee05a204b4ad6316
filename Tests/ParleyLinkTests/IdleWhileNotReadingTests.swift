import NIOCore
import NIOEmbedded
import ParleyCore
import ParleyLink
import ParleyWire
import Testing

/// A link whose reads are held back by the handlers after the framing (backpressure) is not
/// idle for that: with `idleTimeoutWhileNotReading` false, only a peer that stays silent while
/// this side's socket waits for its bytes is closed.
@Suite struct IdleWhileNotReadingTests {
    // LinkHandler keeps the event loop's time: the tests advance the EmbeddedEventLoop's clock by
    // the idle timeout (1 s).

    @Test func aLinkThatHoldsItsReadsBackIsNotClosedAsIdle() throws {
        let (channel, hold) = try makeChannel(idleWhileNotReading: false)
        hold.holding = true
        try channel.writeInbound(Self.someFrame)  // the last read is done; the next is held back
        channel.read()
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(channel.isActive)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        // Reading again: a peer silent for the idle timeout now is closed.
        hold.holding = false
        channel.read()
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        try expectClosedAsIdle(channel)
    }

    @Test func aReadAskedForWhileBytesAreDeliveredKeepsTheSocketWaiting() throws {
        let (channel, _) = try makeChannel(idleWhileNotReading: false, askAgainOnEveryFrame: true)
        channel.read()
        // The frame's handler asks for the next read before the delivery completes, as a channel
        // does when its reader keeps up; nothing asks again after the completion.
        try channel.writeInbound(Self.someFrame)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        try expectClosedAsIdle(channel)
    }

    /// TLS hands on the decrypted bytes of a read later, outside the socket's read (once its
    /// certificate check answered): the read asked for meanwhile is pending, and a silent peer
    /// must still be closed. (The interop's silent node link stayed open for 30 s this way.)
    @Test func bytesHandedOnLaterLeaveTheNextReadPending() throws {
        let late = HandsOnLater()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(late)
        let configuration = LinkConfiguration(
            heartbeatInterval: .seconds(10),
            idleTimeout: .seconds(1),
            idleTimeoutWhileNotReading: false
        )
        try channel.pipeline.syncOperations.addParleyLinkHandlers(configuration: configuration)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()

        channel.read()
        try channel.writeInbound(Self.someFrame)  // the socket read them; TLS keeps them
        channel.read()  // the channel asks for the next read once this one completed
        late.handOn()
        #expect(try channel.readInbound(as: Frame.self)?.type == .userExists)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        try expectClosedAsIdle(channel)
    }

    @Test func byDefaultTheIdleTimeoutRunsWhileReadsAreHeldBack() throws {
        let (channel, hold) = try makeChannel(idleWhileNotReading: true)
        hold.holding = true
        try channel.writeInbound(Self.someFrame)
        channel.read()
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    private static var someFrame: ByteBuffer {
        Frame(type: .userExists, requestID: 5, meta: ByteBuffer()).encoded()
    }

    private func expectClosedAsIdle(_ channel: EmbeddedChannel) throws {
        #expect(!channel.isActive)
        var written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        var decoder = FrameDecoder(maximumFrameSize: 1 << 20)
        let error = try #require(try decoder.decode(buffer: &written))
        #expect(ParleyError(errorFrame: error).code == .idleTimeout)
    }

    private func makeChannel(
        idleWhileNotReading: Bool,
        askAgainOnEveryFrame: Bool = false
    ) throws -> (EmbeddedChannel, HoldReads) {
        let channel = EmbeddedChannel()
        let configuration = LinkConfiguration(
            heartbeatInterval: .seconds(10),
            idleTimeout: .seconds(1),
            idleTimeoutWhileNotReading: idleWhileNotReading
        )
        try channel.pipeline.syncOperations.addParleyLinkHandlers(configuration: configuration)
        let hold = HoldReads(askAgainOnEveryFrame: askAgainOnEveryFrame)
        try channel.pipeline.syncOperations.addHandler(hold)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, hold)
    }
}

/// Swallows reads while `holding`, as an `NIOAsyncChannel` whose reader is behind does; or asks
/// for the next read as each frame arrives, as one whose reader keeps up may.
private final class HoldReads: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = Frame
    var holding = false
    let askAgainOnEveryFrame: Bool

    init(askAgainOnEveryFrame: Bool) {
        self.askAgainOnEveryFrame = askAgainOnEveryFrame
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
        if askAgainOnEveryFrame { context.read() }
    }

    func read(context: ChannelHandlerContext) {
        if !holding { context.read() }
    }
}

/// Keeps the bytes of a read and hands them on later with their own read completion, as TLS
/// does with what it decrypts once a pending certificate check is answered.
private final class HandsOnLater: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private var kept: [NIOAny] = []
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        kept.append(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {}

    func handOn() {
        guard let context else { return }
        for data in kept { context.fireChannelRead(data) }
        kept = []
        context.fireChannelReadComplete()
    }
}
