import ArgumentParser
import Foundation
import ParleyCore

/// How a client command secures its connection to the server: TLS (verified by a pinned
/// fingerprint, a CA file, or trust on first use) or, for debugging, plaintext.
///
/// Each option has an environment variable, used when the option is not given.
struct TransportOptions: ParsableArguments {
    @Option(
        name: .customLong("server-fingerprint"),
        help: ArgumentHelp(
            "Accept only the server certificate with this SHA-256 fingerprint (as `parley server` prints it).",
            discussion: "Environment: PARLEY_SERVER_FINGERPRINT."
        )
    )
    var serverFingerprint: String?

    @Option(
        name: .customLong("ca-file"),
        help: ArgumentHelp(
            "Accept a server certificate that chains to a CA in this PEM file and names the server's host.",
            discussion: "Environment: PARLEY_CA_FILE."
        )
    )
    var caFile: String?

    @Option(
        name: .customLong("known-servers"),
        help: ArgumentHelp(
            "Trust on first use: the file that remembers each server's certificate.",
            discussion: """
                The default, when neither --server-fingerprint nor --ca-file is given. Environment: \
                PARLEY_KNOWN_SERVERS; default ~/.config/parley/known-servers (a node: known-servers in its \
                data directory). A server whose certificate changed is refused until its line is removed.
                """
        )
    )
    var knownServers: String?

    @Flag(
        name: .customLong("insecure-plaintext"),
        help: "No TLS (debugging only): the server must run with --insecure-plaintext too."
    )
    var insecurePlaintext = false

    func validate() throws {
        _ = try security(defaultKnownServers: nil)
    }

    /// The security these options (or the environment) ask for.
    ///
    /// - Parameter defaultKnownServers: the known-servers file when none is named (nil: the
    ///   user's, ``ServerTrust/defaultKnownServersFile``).
    func security(defaultKnownServers: String?) throws -> ConnectionSecurity {
        let environment = ProcessInfo.processInfo.environment
        func value(_ option: String?, _ variable: String) -> String? {
            option ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 }
        }
        let fingerprint = value(serverFingerprint, "PARLEY_SERVER_FINGERPRINT")
        let ca = value(caFile, "PARLEY_CA_FILE")
        let known = value(knownServers, "PARLEY_KNOWN_SERVERS")
        if insecurePlaintext {
            guard serverFingerprint == nil, caFile == nil, knownServers == nil else {
                throw ValidationError("--insecure-plaintext turns TLS off: it takes no certificate option")
            }
            return .insecurePlaintext
        }
        do {
            return try Self.tls(
                fingerprint: fingerprint,
                caFile: ca,
                knownServers: known ?? defaultKnownServers ?? ServerTrust.defaultKnownServersFile
            )
        } catch {
            throw ValidationError(error.message)
        }
    }

    /// TLS verified by a pinned fingerprint, a CA file, or (neither given) trust on first use in
    /// `knownServers`: the one rule for options, environment and configuration files.
    static func tls(fingerprint: String?, caFile: String?, knownServers: String) throws(CommandFailure)
        -> ConnectionSecurity
    {
        switch (fingerprint, caFile) {
        case (let fingerprint?, nil):
            guard let parsed = CertificateFingerprint(fingerprint) else {
                throw CommandFailure(
                    message:
                        "\"\(fingerprint)\" is not a SHA-256 fingerprint (sha256: and 64 hex digits, colons allowed)"
                )
            }
            return .tls(.fingerprint(parsed))
        case (nil, let ca?):
            return .tls(.certificateAuthorities(pemFile: ca))
        case (nil, nil):
            return .tls(.trustOnFirstUse(knownServersFile: knownServers))
        case (_?, _?):
            throw CommandFailure(message: "give either a server fingerprint or a CA file, not both")
        }
    }
}
