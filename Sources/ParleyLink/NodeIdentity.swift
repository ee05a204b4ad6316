import Crypto
import Foundation
import NIOSSL
public import ParleyCore
import SwiftASN1
import X509

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A node's persistent key pair, its ``NodeID`` and the TLS credentials bound to the key.
///
/// The key lives in `<dataDirectory>/node-key.pem` (PKCS#8 PEM, mode 0600). The certificate is a
/// self-signed X.509 certificate for that key with the node ID as its common name, made anew on each
/// load: peers trust the key, never the certificate, so nothing about it needs to persist.
public struct NodeIdentity: Sendable {
    /// The name of the key file inside the data directory.
    public static let keyFileName = "node-key.pem"

    /// The node's ID: the SHA-256 of ``publicKeyDER``.
    public let nodeID: NodeID
    /// The public key as DER SubjectPublicKeyInfo: what peers publish and pin.
    public let publicKeyDER: [UInt8]

    /// The TLS contexts both roles share; made once because each one parses the key and certificate.
    let contexts: NodeTLSContexts

    /// Loads the node's key from `dataDirectory`, or creates it there if there is none yet.
    ///
    /// A new key file is written completely under a temporary name and then linked into place, so a
    /// crash never leaves half a key, and a key file that appeared in the meantime is used, not
    /// replaced. The directory is created if missing.
    ///
    /// - Throws: ``NodeIdentityError`` with ``NodeIdentityError/Code/corruptKeyFile`` when the file
    ///   exists but holds no P-256 private key (it is never overwritten), or
    ///   ``NodeIdentityError/Code/keyFileAccess`` when it cannot be read or written.
    public init(dataDirectory: String) throws(NodeIdentityError) {
        let path = URL(fileURLWithPath: dataDirectory).appendingPathComponent(Self.keyFileName).path
        let key = try KeyFile(path: path, directory: dataDirectory).loadOrCreate()
        try self.init(privateKey: key)
    }

    /// An identity for `privateKey`, kept in memory only.
    init(privateKey: P256.Signing.PrivateKey, now: Date = Date()) throws(NodeIdentityError) {
        let publicKeyDER = Array(privateKey.publicKey.derRepresentation)
        let nodeID = NodeID(subjectPublicKeyInfo: publicKeyDER)
        let certificateDER: [UInt8]
        do {
            let certificate = try Certificate.makeSelfSigned(
                key: privateKey,
                name: try DistinguishedName { CommonName(nodeID.description) },
                usages: [.serverAuth, .clientAuth],
                now: now
            )
            var serializer = DER.Serializer()
            try serializer.serialize(certificate)
            certificateDER = serializer.serializedBytes
        } catch {
            throw NodeIdentityError(
                code: .certificateFailed,
                message: "could not make the certificate for node \(nodeID)",
                cause: error
            )
        }
        do {
            self.contexts = try NodeTLSContexts(
                certificate: NIOSSLCertificate(bytes: certificateDER, format: .der),
                privateKey: NIOSSLPrivateKey(bytes: Array(privateKey.pemRepresentation.utf8), format: .pem)
            )
        } catch {
            throw NodeIdentityError(
                code: .certificateFailed,
                message: "could not load the key and certificate of node \(nodeID) into TLS",
                cause: error
            )
        }
        self.nodeID = nodeID
        self.publicKeyDER = publicKeyDER
    }
}

/// The node key file: read it, or create it once without ever replacing one that exists.
private struct KeyFile {
    let path: String
    let directory: String

    func loadOrCreate() throws(NodeIdentityError) -> P256.Signing.PrivateKey {
        if FileManager.default.fileExists(atPath: path) {
            return try load()
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw NodeIdentityError(
                code: .keyFileAccess,
                path: directory,
                message: "cannot create the data directory",
                cause: error
            )
        }
        let key = P256.Signing.PrivateKey()
        if try create(contents: Array(key.pemRepresentation.utf8)) {
            return key
        }
        // Another process created the key first: its key is the node's key.
        return try load()
    }

    private func load() throws(NodeIdentityError) -> P256.Signing.PrivateKey {
        let bytes: Data
        do {
            bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw NodeIdentityError(code: .keyFileAccess, path: path, message: "cannot read the node key", cause: error)
        }
        guard let text = String(data: bytes, encoding: .utf8) else {
            throw corrupt(cause: nil)
        }
        do {
            return try P256.Signing.PrivateKey(pemRepresentation: text)
        } catch {
            throw corrupt(cause: error)
        }
    }

    private func corrupt(cause: (any Error & Sendable)?) -> NodeIdentityError {
        NodeIdentityError(
            code: .corruptKeyFile,
            path: path,
            message: "the node key file is not a P-256 private key in PEM; it was left as is. Restore it "
                + "from a backup, or move it away to give this node a new key and a new node ID",
            cause: cause
        )
    }

    private func create(contents: [UInt8]) throws(NodeIdentityError) -> Bool {
        do {
            return try PrivateFile.createExclusively(path: path, directory: directory, contents: contents)
        } catch {
            throw NodeIdentityError(code: .keyFileAccess, path: path, message: error.message)
        }
    }
}
