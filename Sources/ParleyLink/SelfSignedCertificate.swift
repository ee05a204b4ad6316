import Crypto
import Foundation
import X509

extension Certificate {
    /// A self-signed certificate for `key`, valid from a day ago for 20 years: what a node
    /// presents on its links, and what a server without an admin's certificate presents.
    static func makeSelfSigned(
        key: P256.Signing.PrivateKey,
        name: DistinguishedName,
        usages: [ExtendedKeyUsage.Usage],
        alternativeNames: [GeneralName] = [],
        now: Date = Date()
    ) throws -> Certificate {
        let certificateKey = Certificate.PrivateKey(key)
        return try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: certificateKey.publicKey,
            notValidBefore: now.addingTimeInterval(-86_400),
            notValidAfter: now.addingTimeInterval(20 * 365.25 * 86_400),
            issuer: name,
            subject: name,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage(usages)
                if !alternativeNames.isEmpty {
                    SubjectAlternativeNames(alternativeNames)
                }
            },
            issuerPrivateKey: certificateKey
        )
    }
}
