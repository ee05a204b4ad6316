public import NIOCore
package import ParleyCore
package import SwiftProtobuf

/// The protobuf message protocol of the meta types, for modules that do not import SwiftProtobuf.
package typealias WireMessage = SwiftProtobuf.Message

/// One protocol frame: a type, a request ID, a structured meta section (protobuf) and an opaque
/// payload section. The length prefix is added by ``FrameEncoder`` and checked by
/// ``FrameDecoder``. See docs/PROTOCOL.md, "Frame layout".
public struct Frame: Sendable, Hashable {
    public var type: FrameType
    /// Reserved; 0 in protocol version 1.
    public var flags: UInt16
    /// Matches answers to requests. 0 means "no answer wanted" (requests) or "not an answer"
    /// (events, connection-level errors).
    public var requestID: UInt32
    /// The protobuf-encoded meta section.
    public var meta: ByteBuffer
    /// The opaque payload section (message bodies); routed without being decoded.
    public var payload: ByteBuffer

    public init(
        type: FrameType,
        flags: UInt16 = 0,
        requestID: UInt32,
        meta: ByteBuffer,
        payload: ByteBuffer = ByteBuffer()
    ) {
        self.type = type
        self.flags = flags
        self.requestID = requestID
        self.meta = meta
        self.payload = payload
    }

    /// A frame whose meta section `writeMeta` writes into a buffer of its own (about
    /// `metaCapacity` bytes): the value form of what
    /// ``append(type:flags:requestID:payload:metaCapacity:to:meta:)`` lays out in place.
    public init(
        type: FrameType,
        flags: UInt16 = 0,
        requestID: UInt32,
        payload: ByteBuffer = ByteBuffer(),
        metaCapacity: Int,
        meta writeMeta: (inout ByteBuffer) -> Void
    ) {
        var meta = ByteBuffer()
        meta.reserveCapacity(metaCapacity)
        writeMeta(&meta)
        self.init(type: type, flags: flags, requestID: requestID, meta: meta, payload: payload)
    }

    /// Bytes in the fixed header after the length field: type, flags, request ID, meta length.
    public static let headerSize = 12
    /// Bytes of the length field itself.
    public static let lengthFieldSize = 4

    /// The value of this frame's length field.
    public var length: Int { Self.headerSize + meta.readableBytes + payload.readableBytes }
}

extension Frame {
    /// A frame whose meta section is `meta`, encoded as protobuf.
    package init(
        type: FrameType,
        requestID: UInt32,
        message meta: some SwiftProtobuf.Message,
        payload: ByteBuffer = ByteBuffer(),
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) {
        // Serializing a fully initialized proto3 message cannot fail; the fallback keeps peer
        // data from ever turning into a crash should that change.
        let bytes: [UInt8] = (try? meta.serializedBytes()) ?? []
        self.init(type: type, requestID: requestID, meta: allocator.buffer(bytes: bytes), payload: payload)
    }

    /// Decodes the meta section as `type`.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidRequest`` when it does not parse.
    package func decodeMeta<M: SwiftProtobuf.Message>(as type: M.Type = M.self) throws(ParleyError) -> M {
        let bytes = Array(meta.readableBytesView)
        if let strict = M.self as? any StrictMeta.Type {
            do {
                try strict.schema.check(bytes)
            } catch {
                throw ParleyError(code: .invalidRequest, message: "\(self.type): \(error)")
            }
        }
        do {
            return try M(serializedBytes: bytes)
        } catch {
            throw ParleyError(
                code: .invalidRequest,
                message: "\(self.type): the meta section is not a valid \(M.protoMessageName)"
            )
        }
    }

    /// An ERROR frame answering request `requestID` (0: connection-level).
    package static func error(_ error: ParleyError, requestID: UInt32, fatal: Bool = false) -> Frame {
        var meta = Parley_V1_Error()
        meta.code = error.code.wireValue
        meta.message = error.message
        meta.retryAfterMs = error.retryAfterMilliseconds ?? 0
        meta.fatal = fatal
        meta.applicationCode = error.applicationCode ?? 0
        return Frame(type: .error, requestID: requestID, message: meta)
    }
}

extension ParleyError {
    /// The error an ERROR frame carries; a frame whose meta does not parse becomes a
    /// protocol violation.
    package init(errorFrame frame: Frame) {
        guard let meta: Parley_V1_Error = try? frame.decodeMeta() else {
            self.init(code: .protocolViolation, message: "an ERROR frame with an unreadable meta section")
            return
        }
        self.init(
            code: Code(wireValue: meta.code),
            message: meta.message,
            retryAfterMilliseconds: meta.retryAfterMs == 0 ? nil : meta.retryAfterMs,
            applicationCode: meta.code == ParleyError.Code.commandFailed.wireValue ? meta.applicationCode : nil
        )
    }
}
