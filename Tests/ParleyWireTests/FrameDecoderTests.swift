import NIOCore
import NIOEmbedded
import NIOTestUtils
import ParleyCore
import ParleyWire
import Testing

@Suite("FrameDecoder")
struct FrameDecoderTests {
    static let maximumFrameSize = 64 * 1024

    @Test("decodes frames whatever way the bytes are split")
    func decodesEverySplit() throws {
        let empty = Frame(type: .ping, requestID: 0, meta: ByteBuffer())
        let withMeta = Frame(type: .logOn, flags: 0x0102, requestID: 7, meta: ByteBuffer(bytes: [1, 2, 3, 4, 5]))
        let withPayload = Frame(
            type: .sendMessage,
            requestID: 0xFFFF_FFFF,
            meta: ByteBuffer(bytes: [0x08, 0x01]),
            payload: ByteBuffer(string: "hello, parley")
        )
        let payloadOnly = Frame(type: .message, requestID: 1, meta: ByteBuffer(), payload: ByteBuffer(string: "x"))
        let large = Frame(
            type: FrameType(rawValue: 0x0130),
            requestID: 99,
            meta: ByteBuffer(repeating: 0xAB, count: 300),
            payload: ByteBuffer(bytes: (0..<10_000).map { UInt8(truncatingIfNeeded: $0) })
        )
        var twoFrames = withMeta.encoded()
        var second = withPayload.encoded()
        twoFrames.writeBuffer(&second)

        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [
                (empty.encoded(), [empty]),
                (withMeta.encoded(), [withMeta]),
                (withPayload.encoded(), [withPayload]),
                (payloadOnly.encoded(), [payloadOnly]),
                (large.encoded(), [large]),
                (twoFrames, [withMeta, withPayload]),
            ],
            decoderFactory: { FrameDecoder(maximumFrameSize: Self.maximumFrameSize) }
        )
    }

    @Test("a frame of exactly the maximum size is accepted")
    func acceptsMaximum() throws {
        let frame = Frame(
            type: .message,
            requestID: 3,
            meta: ByteBuffer(),
            payload: ByteBuffer(repeating: 1, count: 1024 - Frame.headerSize)
        )
        #expect(frame.length == 1024)
        var decoder = FrameDecoder(maximumFrameSize: 1024)
        var buffer = frame.encoded()
        #expect(try decoder.decode(buffer: &buffer) == frame)
        #expect(buffer.readableBytes == 0)
    }

    @Test("an oversized length is rejected from the length field alone")
    func rejectsOversizedLengthBeforeBuffering() throws {
        // Only the 4-byte length arrives: the decoder must not wait for 4 GiB.
        var decoder = FrameDecoder(maximumFrameSize: Self.maximumFrameSize)
        var buffer = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF])
        let error = try #require(throws: FrameDecodingError.self) { try decoder.decode(buffer: &buffer) }
        #expect(error.reason == .frameTooLarge(length: 0xFFFF_FFFF, maximum: Self.maximumFrameSize))
        #expect(error.parleyError.code == .frameTooLarge)

        // The same through a channel: the error surfaces on the first write.
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(FrameDecoder(maximumFrameSize: Self.maximumFrameSize))
        )
        let channelError = try #require(throws: FrameDecodingError.self) {
            try channel.writeInbound(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF]))
        }
        #expect(channelError.reason == .frameTooLarge(length: 0xFFFF_FFFF, maximum: Self.maximumFrameSize))
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }

    @Test("one byte over the maximum is rejected")
    func rejectsOneOverMaximum() throws {
        var decoder = FrameDecoder(maximumFrameSize: 1024)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(1025))
        let error = try #require(throws: FrameDecodingError.self) { try decoder.decode(buffer: &buffer) }
        #expect(error.reason == .frameTooLarge(length: 1025, maximum: 1024))
    }

    @Test("a length shorter than the fixed header is rejected", arguments: [0, 1, 11])
    func rejectsShortLength(length: Int) throws {
        var decoder = FrameDecoder(maximumFrameSize: Self.maximumFrameSize)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(length))
        let error = try #require(throws: FrameDecodingError.self) { try decoder.decode(buffer: &buffer) }
        #expect(error.reason == .frameTooShort(length: length))
        #expect(error.parleyError.code == .protocolViolation)
    }

    @Test("a meta length beyond the frame is rejected")
    func rejectsMetaLengthOutOfBounds() throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(Frame.headerSize + 4))
        buffer.writeInteger(FrameType.logOn.rawValue)
        buffer.writeInteger(UInt16(0))
        buffer.writeInteger(UInt32(1))
        buffer.writeInteger(UInt32(5))  // 5 bytes of meta in a frame that has 4 after the header
        buffer.writeBytes([1, 2, 3, 4])
        var decoder = FrameDecoder(maximumFrameSize: Self.maximumFrameSize)
        let error = try #require(throws: FrameDecodingError.self) { try decoder.decode(buffer: &buffer) }
        #expect(error.reason == .metaLengthOutOfBounds(metaLength: 5, frameLength: Frame.headerSize + 4))
        #expect(error.parleyError.code == .protocolViolation)
    }

    @Test("a frame cut off by the end of the stream is reported")
    func reportsTruncatedFrame() throws {
        let frame = Frame(type: .logOn, requestID: 1, meta: ByteBuffer(bytes: [1, 2, 3]))
        let encoded = frame.encoded()
        let truncated = encoded.getSlice(at: encoded.readerIndex, length: encoded.readableBytes - 1) ?? ByteBuffer()
        #expect(truncated.readableBytes == encoded.readableBytes - 1)

        var decoder = FrameDecoder(maximumFrameSize: Self.maximumFrameSize)
        var direct = truncated
        #expect(try decoder.decode(buffer: &direct) == nil)
        let error = try #require(throws: FrameDecodingError.self) {
            try decoder.decodeLast(buffer: &direct, seenEOF: true)
        }
        #expect(error.reason == .truncatedFrame(bufferedBytes: truncated.readableBytes))

        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(FrameDecoder(maximumFrameSize: Self.maximumFrameSize))
        )
        try channel.writeInbound(truncated)
        #expect(try channel.readInbound(as: Frame.self) == nil)
        let channelError = try #require(throws: FrameDecodingError.self) { try channel.finish() }
        #expect(channelError.reason == .truncatedFrame(bufferedBytes: truncated.readableBytes))
    }

    @Test("the end of the stream between frames is clean")
    func cleanEndOfStream() throws {
        var decoder = FrameDecoder(maximumFrameSize: Self.maximumFrameSize)
        var buffer = ByteBuffer()
        #expect(try decoder.decodeLast(buffer: &buffer, seenEOF: true) == nil)
    }
}
