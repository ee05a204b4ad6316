// The ways a client can verify the server it reaches (TLS is always on unless both sides turn
// it off).
import ParleyClient
import ParleyCore

var configuration = ParleyClient.Configuration(host: "parley.example.com", port: 7420, retry: .wan)

// snippet.fingerprint
// Pin the fingerprint the server prints at every start ("tls fingerprint sha256:...").
if let fingerprint = CertificateFingerprint("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08") {
    configuration.security = .tls(.fingerprint(fingerprint))
}
// snippet.end

// snippet.authority
// The server has a certificate from an organisation's CA: the chain must verify against the
// CA certificates in this PEM file, and the certificate must name the host.
configuration.security = .tls(.certificateAuthorities(pemFile: "/etc/myapp/parley-ca.pem"))
// snippet.end

// snippet.firstUse
// The default: remember the first certificate seen at HOST:PORT, refuse a different one later.
configuration.security = .tls(.trustOnFirstUse(knownServersFile: ServerTrust.defaultKnownServersFile))
// snippet.end

// snippet.plaintext
// Debugging only, against a server started with `--insecure-plaintext`.
configuration.security = .insecurePlaintext
// snippet.end

// snippet.refused
do {
    try await withParleyClient(configuration: configuration) { client in
        let logon = try await client.logOn(userID: 1000, password: "secret")
        print("logged on as \(logon.user.userName)")
    }
} catch let error as ParleyError where error.code == .serverNotTrusted {
    // Never retried: the message names both fingerprints (and the known-servers file).
    print(error.message)
}
// snippet.end
