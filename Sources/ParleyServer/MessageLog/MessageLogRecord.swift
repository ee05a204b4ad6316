import NIOCore
import ParleyCore
import ParleyWire

/// One record of the message log (``MessageLog``), as written to a segment file.
///
/// On disk a record is `length` (UInt32, little-endian: the bytes after the checksum),
/// `checksum` (UInt32, CRC-32 of those bytes), then the payload: a kind byte and the kind's
/// fields, little-endian. A record whose length runs past the end of the file or whose checksum
/// is wrong ends the readable part of a segment (a write torn by a crash).
enum MessageLogRecord: Equatable {
    /// The first record of every segment: the sequence the log would give next when the segment
    /// was started, so sequences keep growing after everything before was compacted away.
    case header(nextSequence: Int64)
    /// A message stored for some recipients, each with its delivery's sequence.
    case stored(Stored)
    /// A delivery acknowledged by its recipient (also the de-duplication tombstone).
    case acknowledged(Acknowledged)
    /// Every delivery to `recipient` written before this record is gone (the user was deleted).
    case dropped(recipient: UserID)

    struct Stored: Equatable {
        var sender: UserID
        var messageID: MessageID
        var isText: Bool
        var wantsReceipt: Bool
        var sentAt: Int64
        var storedAt: Int64
        var allRecipients: [UserID]
        var deliveries: [Delivery]
        var body: [UInt8]
    }

    struct Delivery: Equatable {
        var recipient: UserID
        var sequence: Int64
    }

    struct Acknowledged: Equatable {
        var recipient: UserID
        var sender: UserID
        var messageID: MessageID
        var sequence: Int64
        var at: Int64
    }

    fileprivate enum Kind: UInt8 {
        case header = 1
        case stored = 2
        case acknowledged = 3
        case dropped = 4
    }

    /// Bytes before the payload: length and checksum.
    static let framing = 8
    /// An acknowledgement's length on disk (they all have the same).
    static let acknowledgementLength = framing + 1 + 4 + 4 + 8 + 8 + 8
    /// The largest payload a reader accepts (a message body is at most a few MiB).
    static let maximumPayload = 64 << 20

    /// Appends the framed record to `buffer`; returns its length on disk.
    @discardableResult
    func write(to buffer: inout ByteBuffer) -> Int {
        let start = buffer.writerIndex
        // The fixed fields and lists through one reservation (RawWriter), the body after them.
        switch self {
        case .header(let next):
            buffer.writeRaw(reserving: Self.framing + 1 + 8) { writer in
                writer.recordHead(.header)
                writer.integer(next, endianness: .little)
            }
        case .stored(let stored):
            return Self.writeStored(
                sender: stored.sender, messageID: stored.messageID, isText: stored.isText,
                wantsReceipt: stored.wantsReceipt, sentAt: stored.sentAt, storedAt: stored.storedAt,
                allRecipients: stored.allRecipients, deliveries: stored.deliveries[...], body: stored.body, to: &buffer)
        case .acknowledged(let ack):
            buffer.writeRaw(reserving: Self.acknowledgementLength) { writer in
                writer.recordHead(.acknowledged)
                writer.integer(ack.recipient.rawValue, endianness: .little)
                writer.integer(ack.sender.rawValue, endianness: .little)
                writer.integer(ack.messageID.rawValue, endianness: .little)
                writer.integer(ack.sequence, endianness: .little)
                writer.integer(ack.at, endianness: .little)
            }
        case .dropped(let recipient):
            buffer.writeRaw(reserving: Self.framing + 1 + 4) { writer in
                writer.recordHead(.dropped)
                writer.integer(recipient.rawValue, endianness: .little)
            }
        }
        return Self.frame(from: start, in: &buffer)
    }

    /// Appends a `stored` record made of these fields, as ``write(to:)`` writes
    /// `.stored(Stored(...))`, without making the record first (the committer's round has the
    /// fields at hand, its deliveries in one array for all its messages); returns its length.
    @discardableResult
    static func writeStored(
        sender: UserID,
        messageID: MessageID,
        isText: Bool,
        wantsReceipt: Bool,
        sentAt: Int64,
        storedAt: Int64,
        allRecipients: [UserID],
        deliveries: ArraySlice<Delivery>,
        body: some Collection<UInt8>,
        to buffer: inout ByteBuffer
    ) -> Int {
        let start = buffer.writerIndex
        let fixed = Self.framing + 1 + 4 + 8 + 1 + 8 + 8 + 4 + 4 + 4
        buffer.writeRaw(reserving: fixed + 4 * allRecipients.count + 12 * deliveries.count) { writer in
            writer.recordHead(.stored)
            writer.integer(sender.rawValue, endianness: .little)
            writer.integer(messageID.rawValue, endianness: .little)
            writer.integer(UInt8((isText ? 1 : 0) | (wantsReceipt ? 2 : 0)))
            writer.integer(sentAt, endianness: .little)
            writer.integer(storedAt, endianness: .little)
            writer.integer(UInt32(allRecipients.count), endianness: .little)
            for recipient in allRecipients { writer.integer(recipient.rawValue, endianness: .little) }
            writer.integer(UInt32(deliveries.count), endianness: .little)
            for delivery in deliveries {
                writer.integer(delivery.recipient.rawValue, endianness: .little)
                writer.integer(delivery.sequence, endianness: .little)
            }
            writer.integer(UInt32(body.count), endianness: .little)
        }
        buffer.writeBytes(body)
        return frame(from: start, in: &buffer)
    }

    /// Sets the length and checksum of the record written from `start` to the end of `buffer`;
    /// returns the record's length on disk.
    private static func frame(from start: Int, in buffer: inout ByteBuffer) -> Int {
        let payloadLength = buffer.writerIndex - start - Self.framing
        let offset = start - buffer.readerIndex
        // The length and the checksum of what follows them, in one access to the bytes.
        buffer.withUnsafeMutableReadableBytes { bytes in
            let checksum = CRC32.checksum(UnsafeRawBufferPointer(rebasing: bytes[(offset + Self.framing)...]))
            bytes.storeBytes(of: UInt32(payloadLength).littleEndian, toByteOffset: offset, as: UInt32.self)
            bytes.storeBytes(of: checksum.littleEndian, toByteOffset: offset + 4, as: UInt32.self)
        }
        return payloadLength + Self.framing
    }

    /// What reading one record from the front of some bytes gave.
    enum ReadResult: Equatable {
        /// A record and its length on disk.
        case record(MessageLogRecord, length: Int)
        /// The bytes end before the record does (more may come, or the write was torn).
        case incomplete
        /// The bytes there are not a record: a torn write or damage.
        case damaged(String)
    }

    /// Reads the record at the start of `bytes`.
    static func read(from bytes: UnsafeRawBufferPointer) -> ReadResult {
        guard bytes.count >= framing else { return .incomplete }
        let length = Int(bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian)
        let checksum = bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        guard length >= 1, length <= maximumPayload else { return .damaged("a record length of \(length) bytes") }
        guard bytes.count >= framing + length else { return .incomplete }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[framing..<(framing + length)])
        guard CRC32.checksum(payload) == checksum else { return .damaged("a record whose checksum does not match") }
        var reader = Reader(bytes: payload)
        guard let record = reader.record(), reader.atEnd else {
            return .damaged("a record whose fields do not fit its length")
        }
        return .record(record, length: framing + length)
    }

    /// Reads fields from a payload; nil once something does not fit.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var atEnd: Bool { offset == bytes.count }

        mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self) -> T? {
            guard bytes.count - offset >= MemoryLayout<T>.size else { return nil }
            defer { offset += MemoryLayout<T>.size }
            return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }

        mutating func users(_ count: UInt32) -> [UserID]? {
            guard Int(count) <= (bytes.count - offset) / 4 else { return nil }
            var users: [UserID] = []
            users.reserveCapacity(Int(count))
            for _ in 0..<count {
                guard let raw = integer(UInt32.self) else { return nil }
                users.append(UserID(raw))
            }
            return users
        }

        mutating func record() -> MessageLogRecord? {
            guard let raw = integer(UInt8.self), let kind = Kind(rawValue: raw) else { return nil }
            switch kind {
            case .header:
                return integer(Int64.self).map { .header(nextSequence: $0) }
            case .stored:
                guard let sender = integer(UInt32.self), let messageID = integer(UInt64.self),
                    let flags = integer(UInt8.self), let sentAt = integer(Int64.self),
                    let storedAt = integer(Int64.self), let recipientCount = integer(UInt32.self),
                    let allRecipients = users(recipientCount), let deliveryCount = integer(UInt32.self),
                    Int(deliveryCount) <= (bytes.count - offset) / 12
                else { return nil }
                var deliveries: [Delivery] = []
                deliveries.reserveCapacity(Int(deliveryCount))
                for _ in 0..<deliveryCount {
                    guard let recipient = integer(UInt32.self), let sequence = integer(Int64.self) else { return nil }
                    deliveries.append(Delivery(recipient: UserID(recipient), sequence: sequence))
                }
                guard let bodyLength = integer(UInt32.self), Int(bodyLength) <= bytes.count - offset else { return nil }
                let body = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + Int(bodyLength))]))
                offset += Int(bodyLength)
                return .stored(
                    Stored(
                        sender: UserID(sender), messageID: MessageID(messageID), isText: flags & 1 != 0,
                        wantsReceipt: flags & 2 != 0, sentAt: sentAt, storedAt: storedAt,
                        allRecipients: allRecipients, deliveries: deliveries, body: body
                    )
                )
            case .acknowledged:
                guard let recipient = integer(UInt32.self), let sender = integer(UInt32.self),
                    let messageID = integer(UInt64.self), let sequence = integer(Int64.self),
                    let at = integer(Int64.self)
                else { return nil }
                return .acknowledged(
                    Acknowledged(
                        recipient: UserID(recipient), sender: UserID(sender), messageID: MessageID(messageID),
                        sequence: sequence, at: at
                    )
                )
            case .dropped:
                return integer(UInt32.self).map { .dropped(recipient: UserID($0)) }
            }
        }
    }
}

/// CRC-32 (the IEEE polynomial, as zlib computes it), eight bytes at a time.
enum CRC32 {
    /// The eight slicing tables of 256 entries, one after another in one array: a checksum
    /// reads them through one pointer (eight arrays cost eight retains and releases per call).
    private static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for index in 0..<256 {
            var value = UInt32(index)
            for _ in 0..<8 { value = value & 1 != 0 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1 }
            tables[index] = value
        }
        for index in 0..<256 {
            for table in 1..<8 {
                let previous = tables[(table - 1) * 256 + index]
                tables[table * 256 + index] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        tables.withUnsafeBufferPointer { tables in
            // Every index below is a byte (0...255) plus a table's start: within the 2,048.
            let t = tables.baseAddress!
            var offset = 0
            while bytes.count - offset >= 8 {
                let low = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian ^ crc
                let high = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian
                crc =
                    t[7 * 256 + Int(low & 0xFF)] ^ t[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((low >> 16) & 0xFF)] ^ t[4 * 256 + Int(low >> 24)]
                    ^ t[3 * 256 + Int(high & 0xFF)] ^ t[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ t[256 + Int((high >> 16) & 0xFF)] ^ t[Int(high >> 24)]
                offset += 8
            }
            while offset < bytes.count {
                crc = (crc >> 8) ^ t[Int((crc ^ UInt32(bytes[offset])) & 0xFF)]
                offset += 1
            }
        }
        return crc ^ 0xFFFF_FFFF
    }
}

extension RawWriter {
    /// Starts a record: room for its length and checksum (set when the record is complete),
    /// then its kind.
    fileprivate mutating func recordHead(_ kind: MessageLogRecord.Kind) {
        integer(UInt64(0))
        integer(kind.rawValue)
    }
}
