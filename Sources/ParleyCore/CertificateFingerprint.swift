/// The SHA-256 digest of a TLS certificate (its DER encoding): how a client pins a server.
///
/// The text form is "sha256:" and 64 lowercase hex digits, the digest `openssl x509 -noout
/// -fingerprint -sha256` prints (there in uppercase with colons). Parsing accepts either form,
/// with or without the "sha256:" prefix.
public struct CertificateFingerprint: Hashable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// The 32 bytes of the digest.
    public let digest: [UInt8]

    /// A fingerprint from the 32 bytes of a SHA-256 digest; nil for any other length.
    public init?(digest: [UInt8]) {
        guard digest.count == 32 else { return nil }
        self.digest = digest
    }

    /// Parses "sha256:HEX", "SHA256 Fingerprint=AB:CD:...", or bare hex (colons allowed).
    public init?(_ description: String) {
        var text = Substring(description.trimmingWhitespace())
        for prefix in ["sha256 fingerprint=", "sha256:", "sha256="] where text.lowercased().hasPrefix(prefix) {
            text = text.dropFirst(prefix.count)
            break
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        var high: UInt8?
        for character in text.unicodeScalars {
            if character == ":" { continue }
            guard let value = Self.hexValue(character) else { return nil }
            if let first = high {
                bytes.append(first << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        guard high == nil, bytes.count == 32 else { return nil }
        self.digest = bytes
    }

    /// "sha256:" and 64 lowercase hex digits.
    public var description: String {
        let digits = Array("0123456789abcdef".unicodeScalars)
        var text = "sha256:"
        for byte in digest {
            text.unicodeScalars.append(digits[Int(byte >> 4)])
            text.unicodeScalars.append(digits[Int(byte & 0x0f)])
        }
        return text
    }

    private static func hexValue(_ character: Unicode.Scalar) -> UInt8? {
        switch character {
        case "0"..."9": UInt8(character.value - 0x30)
        case "a"..."f": UInt8(character.value - 0x61 + 10)
        case "A"..."F": UInt8(character.value - 0x41 + 10)
        default: nil
        }
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> Substring {
        var text = Substring(self)
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return text
    }
}
