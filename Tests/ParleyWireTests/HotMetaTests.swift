import NIOCore
import ParleyCore
import ParleyWire
import Testing

@Suite("Hand-coded meta of the message path")
struct HotMetaTests {
    private func bytes(_ write: (inout ByteBuffer) -> Void) -> [UInt8] {
        var buffer = ByteBuffer()
        write(&buffer)
        return Array(buffer.readableBytesView)
    }

    @Test(
        "SEND_MESSAGE: the same bytes as SwiftProtobuf, decoded back by both",
        arguments: [
            HotMeta.SendMessage(
                messageID: 1, recipients: [1000], kind: 0, sentAtMs: 1_764_000_000_000, wantReceipt: false),
            HotMeta.SendMessage(
                messageID: .max, recipients: [1000, 4_294_967_295, 0, 127, 128], kind: 1, sentAtMs: -5,
                wantReceipt: true),
            HotMeta.SendMessage(messageID: 0, recipients: [], kind: 0, sentAtMs: 0, wantReceipt: false),
        ]
    )
    func sendMessageRoundTrip(_ meta: HotMeta.SendMessage) throws {
        var generic = Parley_V1_SendMessageRequest()
        generic.messageID = meta.messageID
        generic.recipients = meta.recipients.map(\.rawValue)
        generic.kind = meta.kind == 0 ? .text : .binary
        generic.sentAtMs = meta.sentAtMs
        generic.wantReceipt = meta.wantReceipt
        let expected: [UInt8] = try generic.serializedBytes()
        #expect(bytes { meta.write(to: &$0) } == expected)
        #expect(HotMeta.SendMessage(meta: ByteBuffer(bytes: expected)) == meta)
        let decoded = try Parley_V1_SendMessageRequest(serializedBytes: bytes { meta.write(to: &$0) })
        #expect(decoded == generic)
    }

    @Test("SEND_MESSAGE in an unusual form is left to the strict generic decoder")
    func sendMessageUnusualForms() {
        let unusual: [(String, [UInt8])] = [
            ("a recipient not packed", [0x10, 0xE8, 0x07]),
            ("a recipient above 2^32 - 1", [0x12, 0x05, 0x80, 0x80, 0x80, 0x80, 0x10]),
            ("an unknown field", [0x08, 0x01, 0x30, 0x01]),
            ("a field repeated", [0x08, 0x01, 0x08, 0x02]),
            ("an unknown payload kind", [0x18, 0x02]),
            ("the message ID as LEN", [0x0A, 0x01, 0x01]),
            ("a varint cut short", [0x08, 0x80]),
            ("a LEN past the end", [0x12, 0x09, 0x01]),
        ]
        for (name, meta) in unusual {
            #expect(HotMeta.SendMessage(meta: ByteBuffer(bytes: meta)) == nil, "\(name)")
        }
    }

    @Test("MESSAGE: the same bytes as SwiftProtobuf; a receiver reads its ID, sender and send time")
    func messageEvent() throws {
        var generic = Parley_V1_MessageEvent()
        generic.messageID = 77
        generic.sender = 1001
        generic.recipients = [1002, 1003]
        generic.kind = .binary
        generic.sentAtMs = 1_764_000_000_123
        generic.deliveredAtMs = 1_764_000_000_456
        generic.storedAtMs = 1_764_000_000_400
        let written = bytes {
            HotMeta.writeMessageEvent(
                messageID: 77, sender: 1001, recipients: [UserID(1002), UserID(1003)], kind: 1,
                sentAtMs: 1_764_000_000_123,
                deliveredAtMs: 1_764_000_000_456, storedAtMs: 1_764_000_000_400, to: &$0)
        }
        #expect(written == (try generic.serializedBytes()))
        let read = try #require(HotMeta.MessageEvent(meta: ByteBuffer(bytes: written)))
        #expect(read.messageID == 77)
        #expect(read.sender == 1001)
        #expect(read.sentAtMs == 1_764_000_000_123)
    }

    @Test("ACK_MESSAGES: the same bytes as SwiftProtobuf, decoded back; unusual forms left to the generic decoder")
    func ackMessages() throws {
        let references: [(sender: UInt32, messageID: UInt64)] = [(1000, 1), (4_294_967_295, .max), (0, 0)]
        var generic = Parley_V1_AckMessagesRequest()
        generic.messages = references.map {
            var reference = Parley_V1_MessageRef()
            reference.sender = $0.sender
            reference.messageID = $0.messageID
            return reference
        }
        let written = bytes { HotMeta.writeAck(references, to: &$0) }
        #expect(written == (try generic.serializedBytes()))
        let read = try #require(HotMeta.ackReferences(meta: ByteBuffer(bytes: written)))
        #expect(read.map(\.sender) == references.map(\.sender))
        #expect(read.map(\.messageID) == references.map(\.messageID))

        #expect(HotMeta.ackReferences(meta: ByteBuffer(bytes: [0x0A, 0x02, 0x18, 0x01])) == nil, "unknown inner field")
        #expect(HotMeta.ackReferences(meta: ByteBuffer(bytes: [0x08, 0x01])) == nil, "not a LEN")
        #expect(
            HotMeta.ackReferences(meta: ByteBuffer(bytes: [0x0A, 0x06, 0x08, 0x80, 0x80, 0x80, 0x80, 0x10])) == nil,
            "sender above 2^32 - 1")
    }

    @Test("the accepted answer to SEND_MESSAGE: the same bytes as SwiftProtobuf")
    func acceptedResponse() throws {
        let results: [(recipient: UInt32, status: UInt8)] = [(1000, 1), (1001, 2), (0, 3)]
        var generic = Parley_V1_SendMessageResponse()
        generic.results = results.map {
            var result = Parley_V1_RecipientResult()
            result.recipient = $0.recipient
            result.status = Parley_V1_DeliveryStatus(rawValue: Int($0.status)) ?? .unspecified
            return result
        }
        #expect(bytes { HotMeta.writeAcceptedResponse(results, to: &$0) } == (try generic.serializedBytes()))

        // The one-recipient form writes what the list form writes for a list of one.
        generic.results = [generic.results[1]]
        #expect(
            bytes { HotMeta.writeAcceptedResponse(recipient: 1001, status: 2, to: &$0) }
                == (try generic.serializedBytes()))
    }
}
