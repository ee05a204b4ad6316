import Crypto
import NIOSSL
import ParleyCore
import X509

/// The TLS settings of node-to-node links, one context per side of the handshake.
///
/// Both sides present the node's self-signed certificate and demand the peer's: TLS 1.3 only, no
/// trust roots. BoringSSL's own chain verification is replaced by ``NodePeerCertificate``: a peer
/// is who its key says it is, and the roles decide whether that is the node they want.
struct NodeTLSContexts: Sendable {
    let client: NIOSSLContext
    let server: NIOSSLContext

    init(certificate: NIOSSLCertificate, privateKey: NIOSSLPrivateKey) throws {
        self.client = try NIOSSLContext(
            configuration: Self.makeConfiguration(certificate: certificate, privateKey: privateKey, server: false)
        )
        self.server = try NIOSSLContext(
            configuration: Self.makeConfiguration(certificate: certificate, privateKey: privateKey, server: true)
        )
    }

    /// The TLS configuration of one side.
    static func makeConfiguration(
        certificate: NIOSSLCertificate,
        privateKey: NIOSSLPrivateKey,
        server: Bool
    ) -> TLSConfiguration {
        var configuration: TLSConfiguration
        if server {
            configuration = .makeServerConfiguration(
                certificateChain: [.certificate(certificate)],
                privateKey: .privateKey(privateKey)
            )
        } else {
            configuration = .makeClientConfiguration()
            configuration.certificateChain = [.certificate(certificate)]
            configuration.privateKey = .privateKey(privateKey)
        }
        configuration.minimumTLSVersion = .tlsv13
        configuration.maximumTLSVersion = .tlsv13
        // A mode that verifies (and so makes the server demand a client certificate); the custom
        // verification callback replaces what BoringSSL would do with it.
        configuration.certificateVerification = .noHostnameVerification
        configuration.trustRoots = .certificates([])
        return configuration
    }
}

/// Checks a peer's certificate and turns it into the peer's node identity.
enum NodePeerCertificate {
    /// The node a certificate speaks for, if it is a self-signed certificate for a P-256 key.
    ///
    /// The TLS handshake itself proves that the peer holds the private key of this certificate;
    /// the self-signature check only refuses certificates that were never a node's own.
    static func authenticate(certificateDER: [UInt8]) throws(NodeLinkError) -> LinkAuthenticated {
        let certificate: Certificate
        do {
            certificate = try Certificate(derEncoded: certificateDER)
        } catch {
            throw NodeLinkError(
                code: .invalidPeerCertificate,
                message: "the peer's certificate does not parse",
                cause: error
            )
        }
        guard let key = P256.Signing.PublicKey(certificate.publicKey) else {
            throw NodeLinkError(
                code: .invalidPeerCertificate,
                message: "the peer's certificate is for a \(certificate.publicKey), not a P-256 node key"
            )
        }
        guard certificate.publicKey.isValidSignature(certificate.signature, for: certificate) else {
            throw NodeLinkError(
                code: .invalidPeerCertificate,
                message: "the peer's certificate is not signed by its own key"
            )
        }
        let publicKeyDER = Array(key.derRepresentation)
        return LinkAuthenticated(peer: NodeID(subjectPublicKeyInfo: publicKeyDER), publicKeyDER: publicKeyDER)
    }

    /// Decides whether the peer behind `certificates` (leaf first) may be linked to in `role`.
    static func verify(
        _ certificates: [NIOSSLCertificate],
        role: NodeLinkRole
    ) throws(NodeLinkError) -> LinkAuthenticated {
        guard let leaf = certificates.first else {
            throw NodeLinkError(code: .invalidPeerCertificate, message: "the peer presented no certificate")
        }
        let der: [UInt8]
        do {
            der = try leaf.toDERBytes()
        } catch {
            throw NodeLinkError(
                code: .invalidPeerCertificate,
                message: "the peer's certificate cannot be read",
                cause: error
            )
        }
        let peer = try authenticate(certificateDER: der)
        switch role.kind {
        case .dialling(let expected):
            guard peer.peer == expected else {
                throw NodeLinkError(
                    code: .impostor,
                    message: "IMPOSTOR: expected node \(expected) at this address, but the peer proved the key "
                        + "of node \(peer.peer). Either that node's key changed or someone is posing as it; "
                        + "the link was refused"
                )
            }
        case .accepting(let authorize):
            guard authorize(peer.peer, peer.publicKeyDER) else {
                throw NodeLinkError(
                    code: .peerNotAuthorized,
                    message: "node \(peer.peer) is not allowed to link to this node"
                )
            }
        }
        return peer
    }
}
