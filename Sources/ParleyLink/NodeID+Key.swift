import Crypto
public import ParleyCore

extension NodeID {
    /// The ID of the node whose public key is `subjectPublicKeyInfo` (DER): its SHA-256 digest.
    public init(subjectPublicKeyInfo: some Sequence<UInt8>) {
        var hasher = SHA256()
        hasher.update(data: Array(subjectPublicKeyInfo))
        // A SHA-256 digest always has the length the initializer checks.
        self.init(digest: Array(hasher.finalize()))!
    }
}
