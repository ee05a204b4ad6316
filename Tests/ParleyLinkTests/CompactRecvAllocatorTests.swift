import NIOCore
import NIOPosix
import Testing

@testable import ParleyLink

/// ``CompactRecvAllocator`` sizes receive buffers exactly as NIO's adaptive allocator does, and
/// fits in an existential's inline buffer (so a channel keeps no boxed copy of it).
@Suite struct CompactRecvAllocatorTests {
    @Test func fitsInAnExistentialsInlineBuffer() {
        #expect(MemoryLayout<CompactRecvAllocator>.size <= 3 * MemoryLayout<Int>.size)
        #expect(MemoryLayout<AdaptiveRecvByteBufferAllocator>.size > 3 * MemoryLayout<Int>.size)
    }

    @Test(arguments: [(64, 64, 65536), (64, 2048, 65536), (100, 1000, 70000), (16, 16, 1 << 20)])
    func sizesBuffersAsNIOsAdaptiveAllocatorDoes(minimum: Int, initial: Int, maximum: Int) {
        var compact = CompactRecvAllocator(minimum: minimum, initial: initial, maximum: maximum)
        var adaptive = AdaptiveRecvByteBufferAllocator(minimum: minimum, initial: initial, maximum: maximum)
        #expect(compact.minimum == adaptive.minimum)
        #expect(compact.maximum == adaptive.maximum)
        // Reads that fill the buffer, reads of a few bytes, and everything between, in a fixed
        // pseudo-random order (a linear congruential sequence, high bits).
        var state = UInt64(minimum * 31 + initial * 7 + maximum)
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        for step in 0..<5_000 {
            let size = compact.nextBufferSize() ?? 0
            #expect(size == adaptive.nextBufferSize(), "step \(step)")
            let read: Int =
                switch next() % 4 {
                case 0: size
                case 1: Int(next() % 8)
                default: Int(next() % UInt64(size + 1))
                }
            #expect(compact.record(actualReadBytes: read) == adaptive.record(actualReadBytes: read), "step \(step)")
        }
        #expect(compact.buffer(allocator: ByteBufferAllocator()).capacity >= compact.nextBufferSize()!)
    }

    @Test func aServerChannelReadsWithIt() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let received = group.next().makePromise(of: ByteBuffer.self)
        let server = try ServerBootstrap(group: group)
            .childChannelOption(.recvAllocator, value: CompactRecvAllocator(minimum: 64, initial: 64, maximum: 65536))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collect(upTo: 10_000, promise: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let client = try ClientBootstrap(group: group).connect(to: server.localAddress!).wait()
        defer { try? client.close().wait() }
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try client.writeAndFlush(ByteBuffer(bytes: bytes)).wait()
        #expect(Array(buffer: try received.futureResult.wait()) == bytes)
    }

    private final class Collect: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        private var collected = ByteBuffer()
        private let count: Int
        private let promise: EventLoopPromise<ByteBuffer>

        init(upTo count: Int, promise: EventLoopPromise<ByteBuffer>) {
            self.count = count
            self.promise = promise
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            collected.writeBuffer(&buffer)
            if collected.readableBytes >= count { promise.succeed(collected) }
        }
    }
}
