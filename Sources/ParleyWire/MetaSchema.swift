package import SwiftProtobuf

/// The field types of a meta message, for the strict check that runs before a request's meta is
/// decoded (docs/PROTOCOL.md section 4).
///
/// Protobuf decoders truncate a `uint32` varint above 2^32 - 1 (recipient 2^32 + 1007 would
/// become 1007) and keep a known field sent with the wrong wire type as an unknown field. Both
/// are refused here instead, with a message that names the field. Unknown fields are still
/// skipped by wire type, so newer clients keep working.
package struct MetaSchema: Sendable {
    package indirect enum Field: Sendable {
        case uint32
        case uint64
        case int64
        case bool
        /// A proto3 enum: an `int32` on the wire.
        case enumeration
        case string
        case bytes
        /// `repeated uint32`: packed (LEN) or not (VARINT), each element at most 2^32 - 1.
        case repeatedUInt32
        /// A nested message (repeated or not).
        case message(MetaSchema)
    }

    let name: String
    let fields: [Int: (name: String, type: Field)]

    package init(_ name: String, _ fields: [Int: (name: String, type: Field)]) {
        self.name = name
        self.fields = fields
    }

    /// Checks `bytes` against the schema.
    ///
    /// - Throws: a description of the first field that breaks it.
    package func check(_ bytes: [UInt8]) throws(MetaSchemaViolation) {
        var reader = Reader(bytes: bytes[...])
        try check(&reader)
    }

    private func check(_ reader: inout Reader) throws(MetaSchemaViolation) {
        while !reader.isAtEnd {
            let key = try reader.varint()
            let number = Int(truncatingIfNeeded: key >> 3)
            guard number > 0, key >> 3 <= 0x1FFF_FFFF else {
                throw MetaSchemaViolation("\(name): field number \(key >> 3) is out of range")
            }
            let known = fields[number]
            let label = known.map { "\(name).\($0.name) (field \(number))" } ?? "\(name) field \(number)"
            switch key & 7 {
            case 0:
                let value = try reader.varint()
                if let known { try Self.checkVarint(value, of: known.type, label) }
            case 2:
                let length = try reader.varint()
                var value = try reader.take(length, label)
                if let known { try Self.checkLength(&value, of: known.type, label) }
            case 1, 5:
                if known != nil { throw MetaSchemaViolation("\(label) has the wrong wire type \(key & 7)") }
                _ = try reader.take(key & 7 == 1 ? 8 : 4, label)
            default:
                throw MetaSchemaViolation("\(label) has the unsupported wire type \(key & 7)")
            }
        }
    }

    private static func checkVarint(_ value: UInt64, of type: Field, _ label: String) throws(MetaSchemaViolation) {
        switch type {
        case .uint32, .repeatedUInt32:
            guard value <= UInt64(UInt32.max) else {
                throw MetaSchemaViolation("\(label) is \(value), above the largest uint32, 4294967295")
            }
        case .enumeration:
            let signed = Int64(bitPattern: value)
            guard Int64(Int32.min) <= signed, signed <= Int64(Int32.max) else {
                throw MetaSchemaViolation("\(label) is \(signed), outside the int32 range of an enum")
            }
        case .uint64, .int64, .bool:
            break
        case .string, .bytes, .message:
            throw MetaSchemaViolation("\(label) has the wrong wire type 0 (VARINT); it takes wire type 2 (LEN)")
        }
    }

    private static func checkLength(_ value: inout Reader, of type: Field, _ label: String) throws(MetaSchemaViolation)
    {
        switch type {
        case .string, .bytes:
            break
        case .message(let schema):
            try schema.check(&value)
        case .repeatedUInt32:
            while !value.isAtEnd { try checkVarint(try value.varint(), of: .uint32, label) }
        case .uint32, .uint64, .int64, .bool, .enumeration:
            throw MetaSchemaViolation("\(label) has the wrong wire type 2 (LEN); it takes wire type 0 (VARINT)")
        }
    }

    private struct Reader {
        var bytes: ArraySlice<UInt8>

        var isAtEnd: Bool { bytes.isEmpty }

        mutating func varint() throws(MetaSchemaViolation) -> UInt64 {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 70, by: 7) {
                guard let byte = bytes.popFirst() else { throw MetaSchemaViolation("a varint is cut short") }
                // The 10th byte may only carry the top bit of a 64-bit value.
                guard shift < 63 || byte <= 1 else { throw MetaSchemaViolation("a varint exceeds 64 bits") }
                value |= UInt64(byte & 0x7F) << UInt64(shift)
                if byte & 0x80 == 0 { return value }
            }
            throw MetaSchemaViolation("a varint is longer than 10 bytes")
        }

        mutating func take(_ count: UInt64, _ label: String) throws(MetaSchemaViolation) -> Reader {
            guard count <= UInt64(bytes.count) else {
                throw MetaSchemaViolation("\(label) runs past the end of the meta section")
            }
            let taken = bytes.prefix(Int(count))
            bytes = bytes.dropFirst(Int(count))
            return Reader(bytes: taken)
        }
    }
}

/// Why a meta section does not fit its message's schema.
package struct MetaSchemaViolation: Error, Sendable, CustomStringConvertible {
    package let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// A meta message whose bytes are checked against a ``MetaSchema`` before they are decoded:
/// the messages the server reads from clients.
package protocol StrictMeta: SwiftProtobuf.Message {
    static var schema: MetaSchema { get }
}

extension Parley_V1_Hello: StrictMeta {
    package static let schema = MetaSchema(
        "Hello",
        [
            1: ("magic", .string), 2: ("min_version", .uint32), 3: ("max_version", .uint32),
            4: ("capabilities", .string), 5: ("agent", .string),
        ])
}

extension Parley_V1_UserInfo: StrictMeta {
    package static let schema = MetaSchema(
        "UserInfo",
        [
            1: ("user_id", .uint32), 2: ("user_name", .string), 3: ("first_name", .string),
            4: ("last_name", .string), 5: ("organization", .string), 6: ("department", .string),
            7: ("application", .string), 8: ("online", .bool), 9: ("registered_at_ms", .int64),
            10: ("node_id", .string), 11: ("node_public_key", .bytes), 12: ("direct_addresses", .string),
            13: ("allow_direct", .bool), 14: ("node_key_updated_at_ms", .int64),
        ])
}

extension Parley_V1_RegisterRequest: StrictMeta {
    package static let schema = MetaSchema(
        "RegisterRequest",
        [
            1: ("info", .message(Parley_V1_UserInfo.schema)), 2: ("password", .string),
            3: ("requested_user_id", .uint32), 4: ("node_public_key", .bytes), 5: ("node_id", .string),
            6: ("direct_addresses", .string), 7: ("allow_direct", .bool),
        ])
}

extension Parley_V1_LogonRequest: StrictMeta {
    package static let schema = MetaSchema(
        "LogonRequest",
        [
            1: ("user_id", .uint32), 2: ("password", .string), 3: ("node_public_key", .bytes),
            4: ("node_id", .string), 5: ("direct_addresses", .string), 6: ("allow_direct", .bool),
            7: ("resumption_token", .string), 8: ("presence", .enumeration), 9: ("presence_text", .string),
        ])
}

extension Parley_V1_UserIdRequest: StrictMeta {
    package static let schema = MetaSchema("UserIdRequest", [1: ("user_id", .uint32)])
}

extension Parley_V1_FindUserIdRequest: StrictMeta {
    package static let schema = MetaSchema("FindUserIdRequest", [1: ("user_name", .string)])
}

extension Parley_V1_FindUsersRequest: StrictMeta {
    package static let schema = MetaSchema(
        "FindUsersRequest",
        [
            1: (
                "filters",
                .message(
                    MetaSchema(
                        "UserFilter", [1: ("field", .enumeration), 2: ("match", .enumeration), 3: ("value", .string)])
                )
            ),
            2: ("online", .enumeration), 3: ("sort", .enumeration), 4: ("descending", .bool), 5: ("limit", .uint32),
        ])
}

extension Parley_V1_UpdateUserInfoRequest: StrictMeta {
    package static let schema = MetaSchema("UpdateUserInfoRequest", [1: ("info", .message(Parley_V1_UserInfo.schema))])
}

extension Parley_V1_ChangePasswordRequest: StrictMeta {
    package static let schema = MetaSchema(
        "ChangePasswordRequest", [1: ("old_password", .string), 2: ("new_password", .string)])
}

extension Parley_V1_SendMessageRequest: StrictMeta {
    package static let schema = MetaSchema(
        "SendMessageRequest",
        [
            1: ("message_id", .uint64), 2: ("recipients", .repeatedUInt32), 3: ("kind", .enumeration),
            4: ("sent_at_ms", .int64), 5: ("want_receipt", .bool),
        ])
}

extension Parley_V1_AckMessagesRequest: StrictMeta {
    package static let schema = MetaSchema(
        "AckMessagesRequest",
        [
            1: ("messages", .message(MetaSchema("MessageRef", [1: ("sender", .uint32), 2: ("message_id", .uint64)])))
        ])
}

extension Parley_V1_ContactRequest: StrictMeta {
    package static let schema = MetaSchema(
        "ContactRequest", [1: ("user_id", .uint32), 2: ("display_rule", .enumeration), 3: ("custom_name", .string)])
}

extension Parley_V1_PresenceRequest: StrictMeta {
    package static let schema = MetaSchema("PresenceRequest", [1: ("state", .enumeration), 2: ("text", .string)])
}

extension Parley_V1_CommandRequest: StrictMeta {
    package static let schema = MetaSchema(
        "CommandRequest",
        [
            1: ("name", .string), 2: ("recipient", .uint32), 3: ("timeout_ms", .uint32), 4: ("fire_and_forget", .bool),
            5: ("store_if_offline", .bool),
        ])
}

extension Parley_V1_CommandReply: StrictMeta {
    package static let schema = MetaSchema(
        "CommandReply",
        [
            1: ("command_id", .uint64), 2: ("error_code", .uint32), 3: ("application_code", .uint32),
            4: ("text", .string),
        ])
}
