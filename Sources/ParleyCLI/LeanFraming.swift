import NIOCore
import ParleyCore
import ParleyWire

/// The hand-coded framing of the lean generator's connections (`parley bench --lean`): frames
/// cut from the inbound bytes without a decoder handler, outbound frames appended to one buffer
/// that is written and flushed once per burst.
struct LeanFraming {
    /// One frame as read, its sections still bytes.
    struct RawFrame {
        var type: UInt16
        var requestID: UInt32
        var meta: ByteBuffer
        var payload: ByteBuffer

        /// The frame as a ``Frame`` for decoding its meta with protobuf (handshake and account
        /// answers, errors: not on the hot path).
        var frame: Frame {
            Frame(type: FrameType(rawValue: type), requestID: requestID, meta: meta)
        }
    }

    /// The frame's bytes broke the framing rules (docs/PROTOCOL.md section 2).
    struct Malformed: Error {}

    private var inbound: ByteBuffer?
    private(set) var outbound: ByteBuffer

    init(allocator: ByteBufferAllocator) {
        outbound = allocator.buffer(capacity: 4096)
    }

    /// Adds bytes read from the connection.
    mutating func received(_ bytes: ByteBuffer) {
        var bytes = bytes
        if inbound == nil {
            inbound = bytes
        } else {
            inbound!.writeBuffer(&bytes)
        }
    }

    /// The next complete frame, or nil until more bytes arrive.
    mutating func nextFrame() throws(Malformed) -> RawFrame? {
        guard var buffer = inbound, let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
            buffer.readableBytes >= Frame.lengthFieldSize + Int(length)
        else { return nil }
        let start = buffer.readerIndex + Frame.lengthFieldSize
        guard length >= Frame.headerSize,
            let type = buffer.getInteger(at: start, as: UInt16.self),
            let requestID = buffer.getInteger(at: start + 4, as: UInt32.self),
            let metaLength = buffer.getInteger(at: start + 8, as: UInt32.self),
            Int(metaLength) <= Int(length) - Frame.headerSize,
            let meta = buffer.getSlice(at: start + Frame.headerSize, length: Int(metaLength)),
            let payload = buffer.getSlice(
                at: start + Frame.headerSize + Int(metaLength),
                length: Int(length) - Frame.headerSize - Int(metaLength)
            )
        else {
            inbound = nil
            throw Malformed()
        }
        buffer.moveReaderIndex(forwardBy: Frame.lengthFieldSize + Int(length))
        inbound = buffer.readableBytes == 0 ? nil : buffer
        return RawFrame(type: type, requestID: requestID, meta: meta, payload: payload)
    }

    /// Appends a whole frame.
    mutating func append(_ frame: Frame) {
        var frame = frame
        FrameEncoder.writeHeader(of: &frame, into: &outbound)
        outbound.writeBuffer(&frame.payload)
    }

    /// Appends a frame whose meta and payload sections are written in place.
    mutating func appendFrame(
        type: UInt16,
        requestID: UInt32,
        meta: (inout ByteBuffer) -> Void,
        payload: (inout ByteBuffer) -> Void = { _ in }
    ) {
        let lengthAt = outbound.writerIndex
        outbound.writeInteger(UInt32(0))
        outbound.writeInteger(type)
        outbound.writeInteger(UInt16(0))
        outbound.writeInteger(requestID)
        let metaLengthAt = outbound.writerIndex
        outbound.writeInteger(UInt32(0))
        let metaStart = outbound.writerIndex
        meta(&outbound)
        let metaLength = outbound.writerIndex - metaStart
        payload(&outbound)
        outbound.setInteger(UInt32(outbound.writerIndex - lengthAt - Frame.lengthFieldSize), at: lengthAt)
        outbound.setInteger(UInt32(metaLength), at: metaLengthAt)
    }

    /// Answers a PING with a PONG carrying the same meta (docs/PROTOCOL.md section 12).
    mutating func appendPong(to ping: RawFrame) {
        appendFrame(type: FrameType.pong.rawValue, requestID: ping.requestID) { buffer in
            var meta = ping.meta
            buffer.writeBuffer(&meta)
        }
    }

    /// Appends the HELLO every lean connection starts with, asking for `capabilities`
    /// (docs/PROTOCOL.md section 7.1).
    mutating func appendHello(capabilities: [String] = []) {
        var hello = Parley_V1_Hello()
        hello.magic = "parley"
        hello.minVersion = 1
        hello.maxVersion = 1
        hello.agent = "parley-bench-lean"
        hello.capabilities = capabilities
        append(Frame(type: .hello, requestID: 1, message: hello))
    }

    /// Writes and flushes what was appended, if anything.
    mutating func flush(on channel: any Channel) {
        guard outbound.readableBytes > 0 else { return }
        channel.writeAndFlush(outbound, promise: nil)
        outbound = channel.allocator.buffer(capacity: 4096)
    }
}
