import Crypto
import ParleySQLite

import struct Foundation.Data

extension NodeRegistry {
    /// A short, readable fingerprint of a public key, as OpenSSH shows one: "SHA256:" and the
    /// unpadded base64 of the key's SHA-256 digest.
    package static func fingerprint(of publicKey: [UInt8]) -> String {
        var base64 = Data(SHA256.hash(data: publicKey)).base64EncodedString()
        while base64.last == "=" { base64.removeLast() }
        return "SHA256:" + base64
    }
}
