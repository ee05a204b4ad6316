public import NIOCore
public import ParleyCore

/// Hand-written protobuf encoding and decoding of the meta sections on the message path:
/// SEND_MESSAGE, its answer, MESSAGE and ACK_MESSAGES (docs/PROTOCOL.md sections 9.11, 9.12, 10.1).
///
/// They read and write `ByteBuffer`s directly, with no intermediate byte arrays or protobuf
/// object graphs. The bytes are the ones SwiftProtobuf writes for the same values (fields in
/// number order, default values left out, packed repeated scalars), so either side can use
/// either coder.
///
/// The decoders are a fast path, not a second validator: they accept the common, plain form of a
/// message and return nil for anything else (an unknown field, a field repeated, a wrong wire type,
/// a value out of range), and the caller then decodes with the generic strict decoder, which
/// names the problem in its error.
public enum HotMeta {
    // MARK: SEND_MESSAGE

    /// The meta section of a SEND_MESSAGE request.
    public struct SendMessage: Sendable, Hashable {
        public var messageID: UInt64
        /// As the sender listed them (duplicates included); typed as users so that the server
        /// takes the list as it is, without a copy.
        public var recipients: [UserID]
        /// 0 text, 1 binary (`PayloadKind`).
        public var kind: Int32
        public var sentAtMs: Int64
        public var wantReceipt: Bool

        public init(messageID: UInt64, recipients: [UserID], kind: Int32, sentAtMs: Int64, wantReceipt: Bool) {
            self.messageID = messageID
            self.recipients = recipients
            self.kind = kind
            self.sentAtMs = sentAtMs
            self.wantReceipt = wantReceipt
        }

        /// Decodes `meta` when it has the plain form (see ``HotMeta``); nil otherwise.
        public init?(meta: ByteBuffer) {
            var reader = Reader(meta)
            var messageID: UInt64 = 0
            var recipients: [UserID] = []
            var kind: Int32 = 0
            var sentAtMs: Int64 = 0
            var wantReceipt = false
            var seen: UInt8 = 0
            while !reader.isAtEnd {
                guard let key = reader.varint(), key < 64 else { return nil }
                let field = UInt8(truncatingIfNeeded: key >> 3)
                let wireType = key & 7
                guard field >= 1, field <= 5, seen & (1 << field) == 0 else { return nil }
                seen |= 1 << field
                switch (field, wireType) {
                case (1, 0):
                    guard let value = reader.varint() else { return nil }
                    messageID = value
                case (2, 2):
                    guard let length = reader.varint(), var packed = reader.slice(length) else { return nil }
                    recipients.reserveCapacity(Int(length))
                    while !packed.isAtEnd {
                        guard let value = packed.varint(), value <= UInt64(UInt32.max) else { return nil }
                        recipients.append(UserID(rawValue: UInt32(value)))
                    }
                case (3, 0):
                    // Only the two defined kinds; anything else goes to the generic path's error.
                    guard let value = reader.varint(), value <= 1 else { return nil }
                    kind = Int32(value)
                case (4, 0):
                    guard let value = reader.varint() else { return nil }
                    sentAtMs = Int64(bitPattern: value)
                case (5, 0):
                    guard let value = reader.varint(), value <= 1 else { return nil }
                    wantReceipt = value == 1
                default:
                    return nil
                }
            }
            self.init(
                messageID: messageID,
                recipients: recipients,
                kind: kind,
                sentAtMs: sentAtMs,
                wantReceipt: wantReceipt
            )
        }

        /// Appends the encoded meta section to `buffer`.
        public func write(to buffer: inout ByteBuffer) {
            buffer.writeVarintField(1, messageID)
            buffer.writePackedField(2, recipients.lazy.map(\.rawValue))
            buffer.writeVarintField(3, UInt64(UInt32(bitPattern: kind)))
            buffer.writeVarintField(4, UInt64(bitPattern: sentAtMs))
            buffer.writeVarintField(5, wantReceipt ? 1 : 0)
        }
    }

    // MARK: The answer to SEND_MESSAGE

    /// Appends a SendMessageResponse with one accepted, non-duplicate result per recipient
    /// (`status`: 1 accepted online, 2 accepted offline, 3 accepted by the server). Answers
    /// with failures or duplicates are rare and written by the generic encoder.
    public static func writeAcceptedResponse(
        _ results: [(recipient: UInt32, status: UInt8)],
        to buffer: inout ByteBuffer
    ) {
        for result in results {
            writeAcceptedResponse(recipient: result.recipient, status: result.status, to: &buffer)
        }
    }

    /// Appends the one result of a SendMessageResponse to a message for one recipient (or one
    /// more result of a longer answer), as ``writeAcceptedResponse(_:to:)`` writes each.
    public static func writeAcceptedResponse(recipient: UInt32, status: UInt8, to buffer: inout ByteBuffer) {
        let inner = varintFieldSize(1, UInt64(recipient)) + varintFieldSize(2, UInt64(status))
        buffer.writeRaw(reserving: 2 + inner) { writer in
            writer.integer(UInt8(1 << 3 | 2))
            writer.varint(UInt64(inner))
            writer.varintField(1, UInt64(recipient))
            writer.varintField(2, UInt64(status))
        }
    }

    // MARK: MESSAGE

    /// Appends the meta section of a MESSAGE event.
    public static func writeMessageEvent(
        messageID: UInt64,
        sender: UInt32,
        recipients: [UserID],
        kind: Int32,
        sentAtMs: Int64,
        deliveredAtMs: Int64,
        storedAtMs: Int64,
        to buffer: inout ByteBuffer
    ) {
        // One reservation for all fields (RawWriter): 6 varint fields of at most 11 bytes, the
        // packed recipients of at most 5 bytes each with their tag and length.
        buffer.writeRaw(reserving: 6 * 11 + 11 + 5 * recipients.count) { writer in
            writer.varintField(1, messageID)
            writer.varintField(2, UInt64(sender))
            writer.packedField(3, recipients.lazy.map(\.rawValue))
            writer.varintField(4, UInt64(UInt32(bitPattern: kind)))
            writer.varintField(5, UInt64(bitPattern: sentAtMs))
            writer.varintField(6, UInt64(bitPattern: deliveredAtMs))
            writer.varintField(7, UInt64(bitPattern: storedAtMs))
        }
    }

    /// The fields of a MESSAGE event a receiver needs to acknowledge and time it.
    public struct MessageEvent: Sendable, Hashable {
        public var messageID: UInt64
        public var sender: UInt32
        public var sentAtMs: Int64

        /// Decodes the fields above from `meta`, skipping the others; nil when it does not parse.
        public init?(meta: ByteBuffer) {
            var reader = Reader(meta)
            var messageID: UInt64 = 0
            var sender: UInt32 = 0
            var sentAtMs: Int64 = 0
            while !reader.isAtEnd {
                guard let key = reader.varint() else { return nil }
                switch (key >> 3, key & 7) {
                case (1, 0):
                    guard let value = reader.varint() else { return nil }
                    messageID = value
                case (2, 0):
                    guard let value = reader.varint(), value <= UInt64(UInt32.max) else { return nil }
                    sender = UInt32(value)
                case (5, 0):
                    guard let value = reader.varint() else { return nil }
                    sentAtMs = Int64(bitPattern: value)
                default:
                    guard reader.skip(wireType: key & 7) else { return nil }
                }
            }
            self.messageID = messageID
            self.sender = sender
            self.sentAtMs = sentAtMs
        }
    }

    // MARK: ACK_MESSAGES

    /// Decodes the (sender, message ID) references of an ACK_MESSAGES meta section when it has
    /// the plain form; nil otherwise.
    public static func ackReferences(meta: ByteBuffer) -> [(sender: UInt32, messageID: UInt64)]? {
        var reader = Reader(meta)
        var references: [(sender: UInt32, messageID: UInt64)] = []
        references.reserveCapacity(meta.readableBytes / 8)
        while !reader.isAtEnd {
            guard reader.varint() == 1 << 3 | 2, let length = reader.varint(), var entry = reader.slice(length) else {
                return nil
            }
            var sender: UInt32 = 0
            var messageID: UInt64 = 0
            var seen: UInt8 = 0
            while !entry.isAtEnd {
                guard let key = entry.varint() else { return nil }
                switch key {
                case 1 << 3 where seen & 1 == 0:
                    guard let value = entry.varint(), value <= UInt64(UInt32.max) else { return nil }
                    sender = UInt32(value)
                    seen |= 1
                case 2 << 3 where seen & 2 == 0:
                    guard let value = entry.varint() else { return nil }
                    messageID = value
                    seen |= 2
                default:
                    return nil
                }
            }
            references.append((sender, messageID))
        }
        return references
    }

    /// Appends an ACK_MESSAGES meta section.
    public static func writeAck(
        _ references: some Sequence<(sender: UInt32, messageID: UInt64)>, to buffer: inout ByteBuffer
    ) {
        for reference in references {
            let inner = varintFieldSize(1, UInt64(reference.sender)) + varintFieldSize(2, reference.messageID)
            buffer.writeInteger(UInt8(1 << 3 | 2))
            buffer.writeVarint(UInt64(inner))
            buffer.writeVarintField(1, UInt64(reference.sender))
            buffer.writeVarintField(2, reference.messageID)
        }
    }

    // MARK: Helpers

    @inlinable
    static func varintSize(_ value: UInt64) -> Int {
        // 1 byte per started group of 7 bits, at least 1.
        (64 - value.leadingZeroBitCount + 6) / 7 + (value == 0 ? 1 : 0)
    }

    /// The encoded size of a varint field with a non-default value; 0 for 0 (left out).
    static func varintFieldSize(_ field: Int, _ value: UInt64) -> Int {
        value == 0 ? 0 : varintSize(UInt64(field << 3)) + varintSize(value)
    }

    /// Reads protobuf primitives from a `ByteBuffer`'s readable bytes without copying them.
    struct Reader {
        private var buffer: ByteBuffer

        init(_ buffer: ByteBuffer) { self.buffer = buffer }

        var isAtEnd: Bool { buffer.readableBytes == 0 }

        /// A varint of at most 10 bytes whose 10th byte only carries the top bit.
        mutating func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while let byte = buffer.readInteger(as: UInt8.self) {
                guard shift < 63 || byte <= 1 else { return nil }
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }

        /// The next `length` bytes as their own reader.
        mutating func slice(_ length: UInt64) -> Reader? {
            guard length <= UInt64(buffer.readableBytes), let bytes = buffer.readSlice(length: Int(length)) else {
                return nil
            }
            return Reader(bytes)
        }

        /// Skips one value of `wireType`.
        mutating func skip(wireType: UInt64) -> Bool {
            switch wireType {
            case 0: return varint() != nil
            case 1: return buffer.readSlice(length: 8) != nil
            case 2: return varint().flatMap { slice($0) } != nil
            case 5: return buffer.readSlice(length: 4) != nil
            default: return false
            }
        }
    }
}

extension ByteBuffer {
    /// Appends `value` as a protobuf varint.

    mutating func writeVarint(_ value: UInt64) {
        writeRaw(reserving: 10) { $0.varint(value) }
    }

    /// Appends a varint field; a 0 (the default) is left out, as proto3 does.

    mutating func writeVarintField(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        writeRaw(reserving: 20) { $0.varintField(field, value) }
    }

    /// Appends a packed `repeated uint32` field; an empty list is left out.
    mutating func writePackedField(_ field: Int, _ values: some Collection<UInt32>) {
        writeRaw(reserving: 11 + 5 * values.count) { $0.packedField(field, values) }
    }
}
