import NIOCore
import NIOEmbedded
import ParleyCore
import ParleyWire
import Testing

@Suite("FrameEncoder")
struct FrameEncoderTests {
    /// Writes `frame` through a ``FrameEncoder`` and returns the buffers it wrote.
    private func encode(_ frame: Frame) throws -> [ByteBuffer] {
        let channel = EmbeddedChannel(handler: FrameEncoder())
        try channel.writeOutbound(frame)
        var buffers: [ByteBuffer] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            buffers.append(buffer)
        }
        #expect(try channel.finish().isClean)
        return buffers
    }

    private func decode(_ buffers: [ByteBuffer]) throws -> [Frame] {
        var all = ByteBuffer()
        for var buffer in buffers { all.writeBuffer(&buffer) }
        var decoder = FrameDecoder(maximumFrameSize: 1 << 20)
        var frames: [Frame] = []
        while let frame = try decoder.decode(buffer: &all) { frames.append(frame) }
        #expect(all.readableBytes == 0)
        return frames
    }

    @Test("a frame laid out with its meta written in place has the bytes of the same frame encoded")
    func metaWrittenInPlace() {
        for (metaBytes, payloadBytes) in [(0, 0), (2, 0), (0, 5), (300, 1024)] {
            let meta = ByteBuffer(repeating: 0x5A, count: metaBytes)
            let payload = ByteBuffer(repeating: 0x33, count: payloadBytes)
            let inPlace = Frame.encoded(
                type: .message, flags: 3, requestID: 99, payload: payload, metaCapacity: 1,
                allocator: ByteBufferAllocator()
            ) { $0.writeImmutableBuffer(meta) }
            let reference = Frame(type: .message, flags: 3, requestID: 99, meta: meta, payload: payload).encoded()
            #expect(inPlace == reference, "meta \(metaBytes), payload \(payloadBytes)")
        }
    }

    @Test("a small payload is coalesced with the header into one buffer")
    func coalescesSmallPayload() throws {
        let frame = Frame(
            type: .sendMessage,
            requestID: 42,
            meta: ByteBuffer(bytes: [0x08, 0x2A]),
            payload: ByteBuffer(repeating: 7, count: FrameEncoder.coalescingLimit)
        )
        let buffers = try encode(frame)
        #expect(buffers.count == 1)
        #expect(buffers.first?.readableBytes == Frame.lengthFieldSize + frame.length)
        #expect(try decode(buffers) == [frame])
    }

    @Test("a large payload is written as its own buffer")
    func writesLargePayloadSeparately() throws {
        let payload = ByteBuffer(bytes: (0..<(FrameEncoder.coalescingLimit + 1)).map { UInt8(truncatingIfNeeded: $0) })
        let frame = Frame(type: .message, requestID: 0, meta: ByteBuffer(bytes: [1, 2, 3]), payload: payload)
        let buffers = try encode(frame)
        #expect(buffers.count == 2)
        #expect(buffers.first?.readableBytes == Frame.lengthFieldSize + Frame.headerSize + 3)
        #expect(buffers.last == payload)
        #expect(try decode(buffers) == [frame])
    }

    @Test("the wire layout matches the protocol")
    func wireLayout() throws {
        let frame = Frame(
            type: .logOn,
            flags: 0x0001,
            requestID: 0x0102_0304,
            meta: ByteBuffer(bytes: [0xAA, 0xBB]),
            payload: ByteBuffer(bytes: [0xCC])
        )
        let bytes = try encode(frame).flatMap { Array($0.readableBytesView) }
        #expect(
            bytes == [
                0, 0, 0, 15,  // length: 12 + 2 + 1
                0x00, 0x11,  // type LOGON
                0x00, 0x01,  // flags
                0x01, 0x02, 0x03, 0x04,  // request ID
                0, 0, 0, 2,  // meta length
                0xAA, 0xBB,  // meta
                0xCC,  // payload
            ]
        )
        #expect(Array(frame.encoded().readableBytesView) == bytes)
    }

    @Test("frames with a protobuf meta round-trip")
    func protobufMetaRoundTrip() throws {
        var hello = Parley_V1_Hello()
        hello.magic = WireProtocol.magic
        hello.minVersion = 1
        hello.maxVersion = 1
        hello.agent = "tests"
        let frame = Frame(type: .hello, requestID: 1, message: hello)
        let decoded = try #require(try decode(try encode(frame)).first)
        let meta: Parley_V1_Hello = try decoded.decodeMeta()
        #expect(meta == hello)
    }
}
