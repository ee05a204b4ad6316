/// The identity of a node: the SHA-256 digest of its public key (the DER SubjectPublicKeyInfo).
///
/// Because the ID is derived from the key, a peer can only present a node ID whose private key it
/// holds; links check this during the TLS handshake (see ParleyLink's `NodeLinkRole`). The
/// canonical text form is the digest in lowercase RFC 4648 base32 without padding: 52 characters
/// from `a-z` and `2-7`.
/// Parsing ignores case, and the dashes and spaces of ``groupedDescription``.
///
/// Every layer uses this one type: the links derive it from a key (ParleyLink's
/// `init(subjectPublicKeyInfo:)`), discovery parses it from a TXT record, the node's registry
/// stores its text form.
public struct NodeID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible, LosslessStringConvertible {
    /// The 32 bytes of the SHA-256 digest.
    public let digest: [UInt8]

    /// Characters in the canonical text form.
    public static let canonicalLength = 52
    /// Bytes in a SHA-256 digest.
    public static let digestLength = 32

    /// The ID whose digest is `digest`; `nil` unless it is 32 bytes.
    public init?(digest: [UInt8]) {
        guard digest.count == Self.digestLength else { return nil }
        self.digest = digest
    }

    /// Parses the text form; `nil` unless it is exactly one digest in base32.
    public init?(_ description: String) {
        var values: [UInt8] = []
        values.reserveCapacity(Self.canonicalLength)
        for character in description.unicodeScalars {
            switch character {
            case "a"..."z": values.append(UInt8(character.value - 0x61))
            case "A"..."Z": values.append(UInt8(character.value - 0x41))
            case "2"..."7": values.append(UInt8(character.value - 0x32 + 26))
            case "-", " ": continue
            default: return nil
            }
        }
        guard values.count == Self.canonicalLength else { return nil }
        var digest: [UInt8] = []
        digest.reserveCapacity(Self.digestLength)
        var accumulator: UInt32 = 0
        var bits = 0
        for value in values {
            accumulator = (accumulator << 5) | UInt32(value)
            bits += 5
            if bits >= 8 {
                bits -= 8
                digest.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        // 52 characters carry 260 bits: the 4 left over must be zero, so each ID has one spelling.
        guard digest.count == Self.digestLength, accumulator == 0 else { return nil }
        self.digest = digest
    }

    /// The canonical form: 52 lowercase base32 characters.
    public var description: String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
        var characters: [UInt8] = []
        characters.reserveCapacity(Self.canonicalLength)
        var accumulator: UInt32 = 0
        var bits = 0
        for byte in digest {
            accumulator = (accumulator << 8) | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                characters.append(alphabet[Int((accumulator >> UInt32(bits)) & 0x1F)])
            }
            accumulator &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 {
            characters.append(alphabet[Int((accumulator << UInt32(5 - bits)) & 0x1F)])
        }
        return String(decoding: characters, as: UTF8.self)
    }

    /// The canonical form in dash-separated groups of four, for people to read and compare.
    public var groupedDescription: String {
        let characters = Array(description)
        return stride(from: 0, to: characters.count, by: 4)
            .map { String(characters[$0..<min($0 + 4, characters.count)]) }
            .joined(separator: "-")
    }

    /// Node IDs are ordered by their text form: the smaller one opens the standing link between
    /// two nodes (PROTOCOL.md, section 26). Base32 text does not sort as the digest's bytes do.
    public static func < (lhs: NodeID, rhs: NodeID) -> Bool {
        lhs.description < rhs.description
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let id = NodeID(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a node ID: \(text)")
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
