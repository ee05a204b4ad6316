import Crypto
import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import SwiftASN1
import Testing
import X509

/// TLS on the client-server link (docs/PROTOCOL.md section 1.1): real servers, real handshakes.
@Suite(.timeLimit(.minutes(2))) struct TLSTests {
    /// Runs `body` against a client that only connects (run() alone, no logon), and returns how
    /// run() ended: nil when it connected, else its error.
    private func connectOnce(_ configuration: ParleyClient.Configuration) async -> ParleyError? {
        var configuration = configuration
        configuration.reconnects = false
        configuration.retry.connectAttempts = 2
        configuration.retry.initialDelay = .milliseconds(10)
        let client = ParleyClient(configuration: configuration, logger: makeTestLogger("client"))
        return await withTaskGroup(of: ParleyError?.self) { group in
            group.addTask {
                do throws(ParleyError) {
                    try await client.run()
                    return nil
                } catch {
                    return error
                }
            }
            group.addTask {
                for await event in client.events {
                    if case .connectionStateChanged(.connected) = event {
                        client.shutdown()
                        break
                    }
                }
                return nil
            }
            var failure: ParleyError?
            for await result in group where result != nil { failure = result }
            return failure
        }
    }

    @Test func theSelfSignedCertificateIsMadeOnceWithAPrivateKey() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = try await withTestServer(dataDirectory: directory) { server in
            try #require(server.server.tlsCertificateFingerprint)
        }
        let key = try FileManager.default.attributesOfItem(atPath: directory.path + "/server-key.pem")
        #expect((key[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        // The fingerprint is that of the certificate file, and survives a restart.
        let pem = try String(contentsOfFile: directory.path + "/server-cert.pem", encoding: .utf8)
        let der = try Certificate(pemEncoded: pem).derBytes
        #expect(first.digest == Array(SHA256.hash(data: der)))
        let second = try await withTestServer(dataDirectory: directory) { server in
            server.server.tlsCertificateFingerprint
        }
        #expect(second == first)
    }

    @Test func aPinnedFingerprintConnectsAndAnotherIsRefusedAtOnce() async throws {
        try await withTestServer { server in
            // The usual test client pins the fingerprint: a full round trip over TLS.
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("ann")
                let bob = try await clients[1].register("bob")
                _ = try await clients[0].client.send(.text("over TLS"), to: [bob])
                let messages = try await clients[1].waitForMessages(1)
                #expect(messages.first?.body == .text("over TLS"))
            }
            var wrong = server.clientConfiguration
            wrong.security = .tls(
                .fingerprint(try #require(CertificateFingerprint(String(repeating: "ab", count: 32)))))
            let start = ContinuousClock.now
            let error = try #require(await connectOnce(wrong))
            #expect(error.code == .serverNotTrusted, "\(error)")
            #expect(error.message.contains("not the pinned"), "\(error)")
            // Not retried: a wrong certificate does not become right.
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }

    @Test func trustOnFirstUseRemembersTheServerAndRefusesAChangedCertificate() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let known = directory.path + "/known-servers"
        let port = try portForRestartTests()
        let firstData = try TemporaryDirectory()
        defer { firstData.remove() }
        let fingerprint = try await withTestServer(dataDirectory: firstData, port: port) { server in
            var configuration = server.clientConfiguration
            configuration.security = .tls(.trustOnFirstUse(knownServersFile: known))
            #expect(await connectOnce(configuration) == nil)
            // The second connection checks against the remembered certificate.
            #expect(await connectOnce(configuration) == nil)
            return try #require(server.server.tlsCertificateFingerprint)
        }
        let lines = try String(contentsOfFile: known, encoding: .utf8).split(separator: "\n")
        #expect(lines == ["127.0.0.1:\(port) \(fingerprint)"])
        // Another server (a new certificate) at the same address is refused loudly.
        try await withTestServer(port: port) { server in
            var configuration = server.clientConfiguration
            configuration.security = .tls(.trustOnFirstUse(knownServersFile: known))
            let error = try #require(await connectOnce(configuration))
            #expect(error.code == .serverNotTrusted, "\(error)")
            #expect(error.message.contains("HAS CHANGED"), "\(error)")
            #expect(error.message.contains(known), "the message says which file to edit: \(error)")
        }
    }

    @Test func aCertificateFromTheAdminsCAIsVerifiedWithThatCA() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let ca = try TestCA(name: "Parley Test CA")
        try ca.writeServerCertificate(
            ipAddress: [127, 0, 0, 1],
            certificatePath: directory.path + "/cert.pem",
            keyPath: directory.path + "/key.pem"
        )
        try ca.writeCertificate(to: directory.path + "/ca.pem")
        try TestCA(name: "Another CA").writeCertificate(to: directory.path + "/other-ca.pem")
        let changes = ServerChanges {
            $0.tls = .certificate(chainFile: directory.path + "/cert.pem", privateKeyFile: directory.path + "/key.pem")
        }
        try await withTestServer(changes) { server in
            var configuration = server.clientConfiguration
            configuration.security = .tls(.certificateAuthorities(pemFile: directory.path + "/ca.pem"))
            try await withTestClient(of: configuration) { test in
                _ = try await test.register("carol")
            }
            configuration.security = .tls(.certificateAuthorities(pemFile: directory.path + "/other-ca.pem"))
            let error = try #require(await connectOnce(configuration))
            #expect(error.code == .serverNotTrusted, "\(error)")
        }
    }

    @Test func plaintextOnlyWhenBothSidesAskForIt() async throws {
        try await withTestServer { server in
            var plaintext = server.clientConfiguration
            plaintext.security = .insecurePlaintext
            let error = try #require(await connectOnce(plaintext))
            #expect(error.code == .protocolViolation, "\(error)")
            #expect(error.message.contains("requires TLS"), "\(error)")
        }
        try await withTestServer(ServerChanges { $0.tls = .insecurePlaintext }) { server in
            #expect(server.server.tlsCertificateFingerprint == nil)
            var tls = server.clientConfiguration
            tls.security = .tls(.trustOnFirstUse(knownServersFile: "/nonexistent/known-servers"))
            let error = try #require(await connectOnce(tls))
            #expect(error.code == .notConnected, "\(error)")
            #expect(error.message.contains("--insecure-plaintext"), "\(error)")
            // Both sides in plaintext: it works.
            try await withTestClient(of: server.clientConfiguration) { test in
                _ = try await test.register("dan")
            }
        }
    }

    @Test func aReloadedCertificateIsShownToNewConnections() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let ca = try TestCA(name: "Parley Test CA")
        let chain = directory.path + "/cert.pem"
        let key = directory.path + "/key.pem"
        try ca.writeServerCertificate(ipAddress: [127, 0, 0, 1], certificatePath: chain, keyPath: key)
        try await withTestServer(ServerChanges { $0.tls = .certificate(chainFile: chain, privateKeyFile: key) }) {
            server in
            let before = try #require(server.server.tlsCertificateFingerprint)
            try await withTestClient(of: server.clientConfiguration) { old in
                _ = try await old.register("erin")
                // The admin renews the certificate; the server reloads it (SIGHUP in `parley server`).
                try ca.writeServerCertificate(ipAddress: [127, 0, 0, 1], certificatePath: chain, keyPath: key)
                let after = try #require(try server.server.reloadTLSCertificate())
                #expect(after != before)
                var renewed = server.clientConfiguration
                renewed.security = .tls(.fingerprint(after))
                #expect(await connectOnce(renewed) == nil)
                // The open connection keeps working.
                #expect(try await old.client.userExists(UserID(1000)) == true)
            }
        }
    }
}

/// A certificate authority made for one test, and server certificates it signs.
struct TestCA {
    let key = P256.Signing.PrivateKey()
    let certificate: Certificate
    let name: DistinguishedName

    init(name commonName: String) throws {
        let name = try DistinguishedName { CommonName(commonName) }
        self.name = name
        let now = Date()
        certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(3600),
            issuer: name,
            subject: name,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true))
            },
            issuerPrivateKey: .init(key)
        )
    }

    func writeCertificate(to path: String) throws {
        try certificate.serializeAsPEM().pemString.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// A new key and a certificate for `ipAddress`, signed by this CA, as PEM files.
    func writeServerCertificate(ipAddress: [UInt8], certificatePath: String, keyPath: String) throws {
        let serverKey = P256.Signing.PrivateKey()
        let now = Date()
        let server = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(serverKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(3600),
            issuer: name,
            subject: try DistinguishedName { CommonName("parley test server") },
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.ipAddress(ASN1OctetString(contentBytes: ArraySlice(ipAddress)))])
            },
            issuerPrivateKey: .init(key)
        )
        try server.serializeAsPEM().pemString.write(toFile: certificatePath, atomically: true, encoding: .utf8)
        try serverKey.pemRepresentation.write(toFile: keyPath, atomically: true, encoding: .utf8)
    }
}

extension Certificate {
    fileprivate var derBytes: [UInt8] {
        get throws {
            var serializer = DER.Serializer()
            try serializer.serialize(self)
            return serializer.serializedBytes
        }
    }
}
