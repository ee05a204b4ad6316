import NIOCore
import NIOEmbedded
import ParleyCore
import ParleyLink
import ParleyWire
import Testing

/// A link whose reads are held back by the handlers after the framing (backpressure) is not
/// idle for that: with `idleTimeoutWhileNotReading` false, only a peer that stays silent while
/// this side wants to read is closed.
@Suite struct IdleWhileNotReadingTests {
    // IdleStateHandler measures wall-clock time, which EmbeddedEventLoop cannot advance: the
    // tests fire its event directly, as KeepAliveHandlerTests do.

    @Test func aLinkThatHoldsItsReadsBackIsNotClosedAsIdle() throws {
        let (channel, hold) = try makeChannel(idleWhileNotReading: false)
        hold.holding = true
        channel.pipeline.fireChannelReadComplete()  // the last read is done; the next is held back
        channel.read()
        channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
        #expect(channel.isActive)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        // Reading again: a peer silent for the idle timeout now is closed.
        hold.holding = false
        channel.read()
        channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
        #expect(!channel.isActive)
        var written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        var decoder = FrameDecoder(maximumFrameSize: 1 << 20)
        let error = try #require(try decoder.decode(buffer: &written))
        #expect(ParleyError(errorFrame: error).code == .idleTimeout)
    }

    @Test func byDefaultTheIdleTimeoutRunsWhileReadsAreHeldBack() throws {
        let (channel, hold) = try makeChannel(idleWhileNotReading: true)
        hold.holding = true
        channel.pipeline.fireChannelReadComplete()
        channel.read()
        channel.pipeline.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.read)
        #expect(!channel.isActive)
    }

    private func makeChannel(idleWhileNotReading: Bool) throws -> (EmbeddedChannel, HoldReads) {
        let channel = EmbeddedChannel()
        let configuration = LinkConfiguration(
            heartbeatInterval: .seconds(10),
            idleTimeout: .seconds(1),
            idleTimeoutWhileNotReading: idleWhileNotReading
        )
        try channel.pipeline.syncOperations.addParleyLinkHandlers(configuration: configuration)
        let hold = HoldReads()
        try channel.pipeline.syncOperations.addHandler(hold)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, hold)
    }
}

/// Swallows reads while `holding`, as an `NIOAsyncChannel` whose reader is behind does.
private final class HoldReads: ChannelOutboundHandler {
    typealias OutboundIn = Frame
    var holding = false

    func read(context: ChannelHandlerContext) {
        if !holding { context.read() }
    }
}
