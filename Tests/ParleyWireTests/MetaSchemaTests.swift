import NIOCore
import ParleyCore
import ParleyWire
import Testing

@Suite("Strict meta decoding")
struct MetaSchemaTests {
    /// Decodes `meta` as the meta of a request of `type`.
    private func decode<M: WireMessage>(_ meta: [UInt8], as type: M.Type) throws(ParleyError) -> M {
        try Frame(type: .sendMessage, requestID: 1, meta: ByteBuffer(bytes: meta)).decodeMeta(as: type)
    }

    /// The varint encoding of `value`.
    private func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        return bytes + [UInt8(value)]
    }

    @Test("well-formed requests decode, packed and unpacked, with unknown fields skipped")
    func accepted() throws {
        // message_id 1, recipients [1001, 1002] packed, then 1003 unpacked, then unknown fields
        // 9 (VARINT), 10 (I64), 11 (LEN), 12 (I32).
        let meta: [UInt8] =
            [0x08, 0x01, 0x12, 0x04, 0xE9, 0x07, 0xEA, 0x07, 0x10] + varint(1003)
            + [0x48, 0x05, 0x51] + Array(repeating: 0, count: 8) + [0x5A, 0x02, 0x61, 0x62, 0x65, 1, 2, 3, 4]
        let request = try decode(meta, as: Parley_V1_SendMessageRequest.self)
        #expect(request.messageID == 1)
        #expect(request.recipients == [1001, 1002, 1003])
        let largest = try decode([0x10] + varint(UInt64(UInt32.max)), as: Parley_V1_SendMessageRequest.self)
        #expect(largest.recipients == [UInt32.max])
        // A negative enum value is 10 bytes on the wire and still in range: the decoder keeps it.
        let negative = try decode([0x18] + varint(UInt64(bitPattern: -1)), as: Parley_V1_SendMessageRequest.self)
        #expect(negative.kind == .UNRECOGNIZED(-1))
    }

    @Test(
        "out-of-range integers, wrong wire types and broken varints are refused, naming the field",
        arguments: [
            // recipient 2^32 + 1007, packed and unpacked
            ([0x12, 0x05, 0xEF, 0x87, 0x80, 0x80, 0x10], "recipients"),
            ([0x10, 0xEF, 0x87, 0x80, 0x80, 0x10], "recipients"),
            // message_id as LEN, kind as I32, sent_at_ms as I64
            ([0x0A, 0x01, 0x00], "message_id"),
            ([0x1D, 0, 0, 0, 0], "kind"),
            ([0x21, 0, 0, 0, 0, 0, 0, 0, 0], "sent_at_ms"),
            // an enum above int32
            ([0x18, 0x80, 0x80, 0x80, 0x80, 0x08], "kind"),
            // a varint of 11 bytes, a length past the end, a group
            ([0x08] + Array(repeating: 0xFF, count: 10) + [0x01], "varint"),
            ([0x5A, 0x05, 0x01], "past the end"),
            ([0x5B], "wire type 3"),
        ] as [([UInt8], String)]
    )
    func refused(meta: [UInt8], mentions: String) {
        #expect {
            try decode(meta, as: Parley_V1_SendMessageRequest.self)
        } throws: { error in
            guard let error = error as? ParleyError else { return false }
            return error.code == .invalidRequest && error.message.contains(mentions)
        }
    }

    @Test("nested messages are checked too")
    func nested() {
        // AckMessagesRequest { messages: [MessageRef { sender: 2^32 + 1 }] }
        let reference: [UInt8] = [0x08] + varint((1 << 32) + 1)
        #expect(throws: ParleyError.self) {
            try decode([0x0A, UInt8(reference.count)] + reference, as: Parley_V1_AckMessagesRequest.self)
        }
        // RegisterRequest { info: UserInfo { user_name: VARINT } }
        #expect(throws: ParleyError.self) {
            try decode([0x0A, 0x02, 0x10, 0x01], as: Parley_V1_RegisterRequest.self)
        }
    }
}
