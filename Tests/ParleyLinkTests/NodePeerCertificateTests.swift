import Crypto
import Foundation
import ParleyCore
import SwiftASN1
import Testing
import X509

@testable import ParleyLink

@Suite("Peer certificates")
struct NodePeerCertificateTests {
    @Test("a node's own certificate yields its node ID")
    func ownCertificate() throws {
        let key = P256.Signing.PrivateKey()
        let peer = try NodePeerCertificate.authenticate(
            certificateDER: makeCertificate(for: key.publicKey, signedBy: key))
        #expect(peer.peer == NodeID(subjectPublicKeyInfo: key.publicKey.derRepresentation))
        #expect(peer.publicKeyDER == Array(key.publicKey.derRepresentation))
    }

    @Test("a certificate not signed by its own key is refused")
    func notSelfSigned() throws {
        let key = P256.Signing.PrivateKey()
        let other = P256.Signing.PrivateKey()
        let error = #expect(throws: NodeLinkError.self) {
            try NodePeerCertificate.authenticate(certificateDER: makeCertificate(for: key.publicKey, signedBy: other))
        }
        #expect(error?.code == .invalidPeerCertificate)
    }

    @Test("a certificate for a key other than P-256 is refused")
    func otherKeyType() throws {
        let key = P384.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("p384") }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: .init(),
            publicKey: .init(key.publicKey),
            notValidBefore: Date(),
            notValidAfter: Date().addingTimeInterval(3600),
            issuer: name,
            subject: name,
            extensions: Certificate.Extensions(),
            issuerPrivateKey: .init(key)
        )
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        let error = #expect(throws: NodeLinkError.self) {
            try NodePeerCertificate.authenticate(certificateDER: serializer.serializedBytes)
        }
        #expect(error?.code == .invalidPeerCertificate)
    }

    @Test("bytes that are no certificate are refused")
    func garbage() {
        let error = #expect(throws: NodeLinkError.self) {
            try NodePeerCertificate.authenticate(certificateDER: [0x30, 0x03, 0x02, 0x01, 0x00])
        }
        #expect(error?.code == .invalidPeerCertificate)
    }
}

private func makeCertificate(for publicKey: P256.Signing.PublicKey, signedBy signer: P256.Signing.PrivateKey) throws
    -> [UInt8]
{
    let name = try DistinguishedName { CommonName("node") }
    let certificate = try Certificate(
        version: .v3,
        serialNumber: .init(),
        publicKey: .init(publicKey),
        notValidBefore: Date(),
        notValidAfter: Date().addingTimeInterval(3600),
        issuer: name,
        subject: name,
        extensions: Certificate.Extensions(),
        issuerPrivateKey: .init(signer)
    )
    var serializer = DER.Serializer()
    try serializer.serialize(certificate)
    return serializer.serializedBytes
}
