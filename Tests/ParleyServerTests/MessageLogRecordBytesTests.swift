import NIOCore
import ParleyCore
import Testing

@testable import ParleyServer

@Suite("Message log record bytes")
struct MessageLogRecordBytesTests {
    static let records: [MessageLogRecord] = [
        .header(nextSequence: 0x0102_0304_0506_0708),
        .stored(
            .init(
                sender: UserID(1001), messageID: MessageID(0xA1B2_C3D4_E5F6_0718), isText: true, wantsReceipt: true,
                sentAt: 1_764_800_000_123, storedAt: 1_764_800_000_456, allRecipients: [UserID(1002), UserID(1003)],
                deliveries: [
                    .init(recipient: UserID(1002), sequence: 77), .init(recipient: UserID(1003), sequence: 78),
                ],
                body: Array("hello, log".utf8))),
        .stored(
            .init(
                sender: UserID(7), messageID: MessageID(1), isText: false, wantsReceipt: false, sentAt: 0, storedAt: -1,
                allRecipients: [], deliveries: [], body: [])),
        .acknowledged(
            .init(
                recipient: UserID(1002), sender: UserID(1001), messageID: MessageID(0xA1B2_C3D4_E5F6_0718),
                sequence: 77, at: 1_764_800_001_000)),
        .dropped(recipient: UserID(1003)),
    ]

    static func hex(_ record: MessageLogRecord) -> String {
        var buffer = ByteBuffer(string: "x")  // a record written after other bytes
        buffer.moveReaderIndex(forwardBy: 1)
        let length = record.write(to: &buffer)
        #expect(length == buffer.readableBytes)
        return buffer.readableBytesView.map { String(format: "%02x", $0) }.joined()
    }

    /// The segment files' format (docs/ARCHITECTURE.md, "The message log"): a log written by an
    /// earlier build must read the same, so the bytes of each kind of record are fixed here.
    @Test("every kind of record is written byte for byte as the format says")
    func bytesOnDisk() {
        let expected = [
            "09000000a1329c31010807060504030201",
            "54000000185ffbb602e90300001807f6e5d4c3b2a1037bf046e69a010000c8f146e69a01000002000000ea030000eb030000"
                + "02000000ea0300004d00000000000000eb0300004e000000000000000a00000068656c6c6f2c206c6f67",
            "2a000000051906eb02070000000100000000000000000000000000000000ffffffffffffffff000000000000000000000000",
            "210000006cd2e16303ea030000e90300001807f6e5d4c3b2a14d00000000000000e8f346e69a010000",
            "05000000bd299a3004eb030000",
        ]
        #expect(Self.records.map(Self.hex) == expected)
        #expect(Self.hex(Self.records[3]).count / 2 == MessageLogRecord.acknowledgementLength)
    }

    @Test("what is written reads back as the same records")
    func readsBack() {
        for record in Self.records {
            var buffer = ByteBuffer()
            let length = record.write(to: &buffer)
            let read = buffer.withUnsafeReadableBytes { MessageLogRecord.read(from: $0) }
            #expect(read == .record(record, length: length))
        }
    }
}
