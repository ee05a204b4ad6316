public import NIOCore
public import ParleyCore

/// Why a byte stream could not be cut into frames. The stream cannot be trusted afterwards.
public struct FrameDecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: Hashable, Sendable {
        /// The length field announced more than the configured maximum.
        case frameTooLarge(length: Int, maximum: Int)
        /// The length field is smaller than the fixed header.
        case frameTooShort(length: Int)
        /// The meta length does not fit in the frame.
        case metaLengthOutOfBounds(metaLength: Int, frameLength: Int)
        /// The connection closed in the middle of a frame.
        case truncatedFrame(bufferedBytes: Int)
    }

    public var reason: Reason

    public init(_ reason: Reason) { self.reason = reason }

    public var description: String {
        switch reason {
        case .frameTooLarge(let length, let maximum):
            "frame of \(length) bytes exceeds the maximum of \(maximum) bytes"
        case .frameTooShort(let length):
            "frame length \(length) is shorter than the \(Frame.headerSize)-byte header"
        case .metaLengthOutOfBounds(let metaLength, let frameLength):
            "meta length \(metaLength) does not fit in a frame of \(frameLength) bytes"
        case .truncatedFrame(let bufferedBytes):
            "connection closed inside a frame (\(bufferedBytes) bytes buffered)"
        }
    }

    /// The protocol error to report to the peer.
    public var parleyError: ParleyError {
        switch reason {
        case .frameTooLarge: ParleyError(code: .frameTooLarge, message: description)
        default: ParleyError(code: .protocolViolation, message: description)
        }
    }
}

/// Cuts a byte stream into ``Frame``s. The length field is checked against `maximumFrameSize`
/// before a single byte of the frame is buffered, so a hostile length costs nothing.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Frame

    /// The largest accepted value of the length field.
    public let maximumFrameSize: Int

    public init(maximumFrameSize: Int) {
        self.maximumFrameSize = maximumFrameSize
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self).map(Int.init) else {
            return nil
        }
        guard length <= maximumFrameSize else {
            throw FrameDecodingError(.frameTooLarge(length: length, maximum: maximumFrameSize))
        }
        guard length >= Frame.headerSize else {
            throw FrameDecodingError(.frameTooShort(length: length))
        }
        guard buffer.readableBytes >= Frame.lengthFieldSize + length else { return nil }

        let start = buffer.readerIndex + Frame.lengthFieldSize
        // These reads are inside the readable bytes checked above.
        guard let type = buffer.getInteger(at: start, as: UInt16.self),
            let flags = buffer.getInteger(at: start + 2, as: UInt16.self),
            let requestID = buffer.getInteger(at: start + 4, as: UInt32.self),
            let metaLength = buffer.getInteger(at: start + 8, as: UInt32.self).map(Int.init)
        else { return nil }
        guard metaLength <= length - Frame.headerSize else {
            throw FrameDecodingError(.metaLengthOutOfBounds(metaLength: metaLength, frameLength: length))
        }
        let payloadLength = length - Frame.headerSize - metaLength
        guard let meta = buffer.getSlice(at: start + Frame.headerSize, length: metaLength),
            let payload = buffer.getSlice(at: start + Frame.headerSize + metaLength, length: payloadLength)
        else { return nil }
        buffer.moveReaderIndex(forwardBy: Frame.lengthFieldSize + length)
        return Frame(
            type: FrameType(rawValue: type),
            flags: flags,
            requestID: requestID,
            meta: meta,
            payload: payload
        )
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        if let frame = try decode(buffer: &buffer) { return frame }
        if buffer.readableBytes > 0 {
            throw FrameDecodingError(.truncatedFrame(bufferedBytes: buffer.readableBytes))
        }
        return nil
    }
}

/// Writes ``Frame``s with their length prefix. Small payloads are copied into the header's
/// buffer (one write); large ones are written as their own buffer so they are never copied.
public final class FrameEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Frame
    public typealias OutboundOut = ByteBuffer

    /// Payloads up to this many bytes are coalesced with the header.
    public static let coalescingLimit = 1024

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        Self.write(unwrapOutboundIn(data), context: context, promise: promise)
    }

    /// Hands `frame`'s wire bytes to the handler before `context`: one buffer with the header,
    /// and the payload in it when it is small or as its own buffer when not. `promise` completes
    /// with the last of them.
    public static func write(_ frame: Frame, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        var frame = frame
        let coalesce = frame.payload.readableBytes <= coalescingLimit
        let headerBytes = Frame.lengthFieldSize + Frame.headerSize + frame.meta.readableBytes
        var buffer = context.channel.allocator.buffer(
            capacity: headerBytes + (coalesce ? frame.payload.readableBytes : 0)
        )
        writeHeader(of: &frame, into: &buffer)
        if coalesce {
            buffer.writeBuffer(&frame.payload)
            context.write(NIOAny(buffer), promise: promise)
        } else {
            context.write(NIOAny(buffer), promise: nil)
            context.write(NIOAny(frame.payload), promise: promise)
        }
    }

    /// Appends the length field, the fixed header and the meta section of `frame` to `buffer`.
    public static func writeHeader(of frame: inout Frame, into buffer: inout ByteBuffer) {
        writeFixedHeader(
            length: frame.length, type: frame.type, flags: frame.flags, requestID: frame.requestID,
            metaLength: frame.meta.readableBytes, into: &buffer
        )
        buffer.writeBuffer(&frame.meta)
    }

    /// Appends the length field and the fixed header (docs/PROTOCOL.md section 2).
    static func writeFixedHeader(
        length: Int,
        type: FrameType,
        flags: UInt16,
        requestID: UInt32,
        metaLength: Int,
        into buffer: inout ByteBuffer
    ) {
        buffer.writeRaw(reserving: Frame.lengthFieldSize + Frame.headerSize) { writer in
            writer.integer(UInt32(truncatingIfNeeded: length))
            writer.integer(type.rawValue)
            writer.integer(flags)
            writer.integer(requestID)
            writer.integer(UInt32(truncatingIfNeeded: metaLength))
        }
    }
}

extension Frame {
    /// Lays out a frame whose meta section `writeMeta` writes straight into the frame's buffer,
    /// with `payload` after it: the wire bytes of ``Frame/init(type:flags:requestID:meta:payload:)``
    /// with that meta, without a buffer of its own for the meta or a copy of it.
    ///
    /// - Parameter metaCapacity: About how many bytes the meta takes (room is made up front).
    public static func encoded(
        type: FrameType,
        flags: UInt16 = 0,
        requestID: UInt32,
        payload: ByteBuffer = ByteBuffer(),
        metaCapacity: Int,
        allocator: ByteBufferAllocator,
        meta writeMeta: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        var buffer = allocator.buffer(
            capacity: lengthFieldSize + headerSize + metaCapacity + payload.readableBytes
        )
        append(
            type: type, flags: flags, requestID: requestID, payload: payload, metaCapacity: metaCapacity,
            to: &buffer, meta: writeMeta
        )
        return buffer
    }

    /// Appends the frame ``encoded(type:flags:requestID:payload:metaCapacity:allocator:meta:)``
    /// lays out to `buffer` (several frames in one buffer: one write for all of them).
    public static func append(
        type: FrameType,
        flags: UInt16 = 0,
        requestID: UInt32,
        payload: ByteBuffer = ByteBuffer(),
        metaCapacity: Int,
        to buffer: inout ByteBuffer,
        meta writeMeta: (inout ByteBuffer) -> Void
    ) {
        var payload = payload
        buffer.reserveCapacity(
            minimumWritableBytes: lengthFieldSize + headerSize + metaCapacity + payload.readableBytes
        )
        let start = buffer.writerIndex
        // Both lengths are set once the meta is written.
        FrameEncoder.writeFixedHeader(
            length: 0, type: type, flags: flags, requestID: requestID, metaLength: 0, into: &buffer)
        let metaStart = buffer.writerIndex
        writeMeta(&buffer)
        let metaLength = buffer.writerIndex - metaStart
        buffer.writeBuffer(&payload)
        let length = UInt32(truncatingIfNeeded: buffer.writerIndex - start - lengthFieldSize)
        let readerIndex = buffer.readerIndex
        // Both lengths in one access to the bytes (two setIntegers check the storage twice).
        buffer.withUnsafeMutableReadableBytes { bytes in
            bytes.storeBytes(of: length.bigEndian, toByteOffset: start - readerIndex, as: UInt32.self)
            bytes.storeBytes(
                of: UInt32(truncatingIfNeeded: metaLength).bigEndian, toByteOffset: metaStart - 4 - readerIndex,
                as: UInt32.self)
        }
    }

    /// The complete wire form of this frame (length prefix included).
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var copy = self
        var buffer = allocator.buffer(capacity: Frame.lengthFieldSize + length)
        FrameEncoder.writeHeader(of: &copy, into: &buffer)
        buffer.writeBuffer(&copy.payload)
        return buffer
    }
}
