import Crypto
import Foundation
import ParleyCore

/// The node a client declares in REGISTER or LOGON, checked before it is recorded.
///
/// The server derives nothing: it checks that the declared node ID is the one the key gives
/// (docs/PROTOCOL.md, "Node keys"), so peers can trust either, and records what the
/// authenticated user declared.
struct NodeDeclaration: Sendable, Hashable {
    var nodeID: String
    /// SubjectPublicKeyInfo DER of an uncompressed P-256 key, exactly as received.
    var publicKey: [UInt8]
    var directAddresses: [String]
    var allowsDirect: Bool

    /// The largest `node_public_key` accepted, checked before the key is parsed.
    static let maximumKeySize = 512
    static let maximumAddressCount = 8
    /// The longest direct address, in UTF-8 bytes.
    static let maximumAddressSize = 128

    /// Checks the node fields of a REGISTER or LOGON request.
    ///
    /// - Returns: nil when the request declares no node (every node field empty).
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidRequest`` when a field is
    ///   malformed, the node ID is not the key's, or node fields come without a key.
    static func validated(
        publicKey: Data,
        nodeID: String,
        directAddresses: [String],
        allowsDirect: Bool
    ) throws(ParleyError) -> NodeDeclaration? {
        guard !publicKey.isEmpty else {
            guard nodeID.isEmpty, directAddresses.isEmpty, !allowsDirect else {
                throw invalid("node_id, direct_addresses and allow_direct need a node_public_key")
            }
            return nil
        }
        guard publicKey.count <= maximumKeySize else {
            throw invalid("node_public_key is longer than \(maximumKeySize) bytes")
        }
        let key: P256.Signing.PublicKey
        do {
            key = try P256.Signing.PublicKey(derRepresentation: publicKey)
        } catch {
            throw invalid("node_public_key is not a P-256 SubjectPublicKeyInfo")
        }
        // One encoding per key, so every peer hashes the same bytes to the same node ID.
        guard key.derRepresentation == publicKey else {
            throw invalid("node_public_key is not the DER SubjectPublicKeyInfo of an uncompressed P-256 point")
        }
        let expectedID = Self.nodeID(for: publicKey)
        guard nodeID == expectedID else {
            throw invalid("node_id must be \(expectedID), the lowercase base32 SHA-256 of node_public_key")
        }
        guard directAddresses.count <= maximumAddressCount else {
            throw invalid("more than \(maximumAddressCount) direct addresses")
        }
        for address in directAddresses {
            try checkAddress(address)
        }
        return NodeDeclaration(
            nodeID: nodeID,
            publicKey: [UInt8](publicKey),
            directAddresses: directAddresses,
            allowsDirect: allowsDirect
        )
    }

    /// Lowercase base32 (RFC 4648 alphabet, no padding) of SHA-256(`publicKey`): 52 characters.
    static func nodeID(for publicKey: some DataProtocol) -> String {
        base32(Array(SHA256.hash(data: publicKey)))
    }

    static func base32(_ bytes: [UInt8]) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
        var encoded: [UInt8] = []
        encoded.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                encoded.append(alphabet[Int(buffer >> UInt32(bits) & 0x1F)])
            }
            buffer &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 {
            encoded.append(alphabet[Int(buffer << UInt32(5 - bits) & 0x1F)])
        }
        return String(decoding: encoded, as: UTF8.self)
    }

    /// "host:port": 1 to 128 bytes, no white space or control characters (Unicode White_Space,
    /// general category Cc), a decimal port
    /// 1...65535 after the last colon, a non-empty host, IPv6 hosts in brackets.
    private static func checkAddress(_ address: String) throws(ParleyError) {
        guard (1...maximumAddressSize).contains(address.utf8.count) else {
            throw invalid("a direct address must be 1 to \(maximumAddressSize) bytes")
        }
        let isBlankOrControl = { (scalar: Unicode.Scalar) in
            scalar.properties.isWhitespace || scalar.properties.generalCategory == .control
        }
        guard !address.unicodeScalars.contains(where: isBlankOrControl) else {
            throw invalid("a direct address contains white space or a control character")
        }
        guard HostAndPort(address) != nil else {
            throw invalid(
                "direct address \"\(address)\" is not host:port (a port 1...65535; an IPv6 host in brackets)")
        }
    }

    private static func invalid(_ message: String) -> ParleyError {
        ParleyError(code: .invalidRequest, message: message)
    }
}
