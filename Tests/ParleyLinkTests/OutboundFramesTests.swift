import NIOCore
import NIOEmbedded
import ParleyCore
import ParleyWire
import Testing

@testable import ParleyLink

@Suite("LinkHandler, outbound frames")
struct OutboundFramesTests {
    private func makeChannel() throws -> (EmbeddedChannel, LinkHandler) {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addParleyLinkHandlers(configuration: LinkConfiguration())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, try channel.pipeline.syncOperations.handler(type: LinkHandler.self))
    }

    private func frames(in buffer: ByteBuffer) throws -> [Frame] {
        var buffer = buffer
        var decoder = FrameDecoder(maximumFrameSize: 1 << 20)
        var frames: [Frame] = []
        while let frame = try decoder.decode(buffer: &buffer) { frames.append(frame) }
        #expect(buffer.readableBytes == 0)
        return frames
    }

    @Test("frames written between flushes go out as one buffer at the flush, in the order written")
    func coalescedUntilFlush() throws {
        let (channel, link) = try makeChannel()
        link.write(
            Frame(type: .userExists, requestID: 1, meta: ByteBuffer(string: "a"), payload: ByteBuffer(string: "x")))
        link.write(type: .sendMessage, requestID: 2, payload: ByteBuffer(string: "body"), metaCapacity: 8) {
            $0.writeString("meta")
        }
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)

        channel.flush()
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        let both = try frames(in: written)
        #expect(both.map(\.requestID) == [1, 2])
        #expect(
            both[0]
                == Frame(
                    type: .userExists, requestID: 1, meta: ByteBuffer(string: "a"), payload: ByteBuffer(string: "x")))
        #expect(
            both[1]
                == Frame(
                    type: .sendMessage, requestID: 2, meta: ByteBuffer(string: "meta"),
                    payload: ByteBuffer(string: "body"))
        )
        _ = try channel.finish()
    }

    @Test("a write with a promise or a large payload keeps its place after the frames laid out before it")
    func orderKeptAcrossKinds() throws {
        let (channel, link) = try makeChannel()
        let large = ByteBuffer(repeating: 7, count: FrameEncoder.coalescingLimit + 1)
        link.write(Frame(type: .userExists, requestID: 1, meta: ByteBuffer()))
        let promise = channel.eventLoop.makePromise(of: Void.self)
        link.write(Frame(type: .userExists, requestID: 2, meta: ByteBuffer()), promise: promise)
        link.write(Frame(type: .userExists, requestID: 3, meta: ByteBuffer()))
        link.write(type: .sendMessage, requestID: 4, payload: large, metaCapacity: 4) { $0.writeString("m") }
        link.write(encoded: Frame(type: .userExists, requestID: 5, meta: ByteBuffer()).encoded())
        link.write(Frame(type: .userExists, requestID: 6, meta: ByteBuffer()))
        channel.flush()
        try promise.futureResult.wait()

        var all = ByteBuffer()
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&buffer) }
        let written = try frames(in: all)
        #expect(written.map(\.requestID) == [1, 2, 3, 4, 5, 6])
        #expect(written[3].payload == large)
        #expect(written[3].meta == ByteBuffer(string: "m"))
        _ = try channel.finish()
    }

    @Test("a receiver takes the frames instead of the pipeline; PINGs are still answered by the link")
    func receiverTakesFrames() throws {
        let (channel, link) = try makeChannel()
        let after = PipelineFrames()
        try channel.pipeline.syncOperations.addHandler(after)
        let receiver = DirectFrames()
        link.deliverFrames(to: receiver)

        try channel.writeInbound(Frame(type: .userExists, requestID: 1, meta: ByteBuffer()).encoded())
        try channel.writeInbound(Frame(type: .ping, requestID: 2, message: Parley_V1_Ping()).encoded())
        #expect(receiver.requestIDs == [1])
        #expect(after.requestIDs.isEmpty)
        let pong = try frames(in: try #require(try channel.readOutbound(as: ByteBuffer.self)))
        #expect(pong.map(\.type) == [.pong])

        link.deliverFrames(to: nil)
        try channel.writeInbound(Frame(type: .userExists, requestID: 3, meta: ByteBuffer()).encoded())
        #expect(receiver.requestIDs == [1])
        #expect(after.requestIDs == [3])
        _ = try channel.finish()
    }

    @Test("a receiver hears of the link's events, holds reads back, and is let go with the handler")
    func receiverHearsEventsAndHoldsReads() throws {
        let channel = EmbeddedChannel()
        let reads = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(reads)
        let configuration = LinkConfiguration(heartbeatInterval: .zero, idleTimeout: .seconds(1))
        try channel.pipeline.syncOperations.addParleyLinkHandlers(configuration: configuration)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let link = try channel.pipeline.syncOperations.handler(type: LinkHandler.self)
        let receiver = EventRecorder()
        link.deliverFrames(to: receiver)
        #expect(link.frameReceiver === receiver)
        #expect(link.channelContext != nil)

        // Reads go on to the socket only while the receiver lets them.
        channel.read()
        #expect(reads.count == 1)
        receiver.mayRead = false
        channel.read()
        #expect(reads.count == 1)
        receiver.mayRead = true

        try channel.writeInbound(Frame(type: .userExists, requestID: 1, meta: ByteBuffer()).encoded())
        #expect(receiver.events == ["frame 1", "read complete"])

        // What the receiver writes goes out at its flush, not before.
        link.write(Frame(type: .userExists, requestID: 2, meta: ByteBuffer()))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        link.flush()
        let written = try frames(in: try #require(try channel.readOutbound(as: ByteBuffer.self)))
        #expect(written.map(\.requestID) == [2])

        // The idle timeout: the event, then the close, then the handler's removal.
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
        #expect(receiver.events.suffix(3) == ["idle timeout", "inactive", "removed"])
        #expect(link.frameReceiver == nil)
        _ = try? channel.finish()
    }

    @Test("the pool keeps buffers nothing else holds, up to its limits, and hands them back empty")
    func poolKeepsOnlyFreeBuffers() {
        let pool = OutboundBufferPool()
        var free = pool.take(allocator: ByteBufferAllocator())
        free.writeString("written")
        pool.give(&free)
        #expect(pool.count == 1)

        var held = pool.take(allocator: ByteBufferAllocator())
        #expect(pool.count == 0)
        #expect(held.readableBytes == 0 && held.writerIndex == 0)
        let channelCopy = held
        withExtendedLifetime(channelCopy) { pool.give(&held) }
        #expect(pool.count == 0)

        var large = ByteBufferAllocator().buffer(capacity: OutboundBufferPool.largestKept + 1)
        pool.give(&large)
        #expect(pool.count == 0)

        for _ in 0..<(OutboundBufferPool.kept + 2) {
            var buffer = ByteBufferAllocator().buffer(capacity: 64)
            pool.give(&buffer)
        }
        #expect(pool.count == OutboundBufferPool.kept)
    }
}

private final class DirectFrames: LinkFrameReceiver {
    var requestIDs: [UInt32] = []
    func linkReceived(_ frame: Frame) { requestIDs.append(frame.requestID) }
}

private final class PipelineFrames: ChannelInboundHandler {
    typealias InboundIn = Frame
    var requestIDs: [UInt32] = []
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        requestIDs.append(unwrapInboundIn(data).requestID)
    }
}

private final class EventRecorder: LinkFrameReceiver {
    var events: [String] = []
    var mayRead = true
    func linkReceived(_ frame: Frame) { events.append("frame \(frame.requestID)") }
    func linkReadComplete() { events.append("read complete") }
    func linkEvent(_ event: LinkEvent) {
        if case .idleTimeout = event { events.append("idle timeout") } else { events.append("framing error") }
    }
    func linkInactive() { events.append("inactive") }
    func linkRemoved() { events.append("removed") }
    func linkShouldRead() -> Bool { mayRead }
}

/// Counts the reads that reach the socket's end of the pipeline.
private final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var count = 0
    func read(context: ChannelHandlerContext) {
        count += 1
        context.read()
    }
}
