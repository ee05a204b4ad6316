import class Foundation.ProcessInfo

/// How a client secures its connection to a Parley server.
public enum ConnectionSecurity: Sendable, Hashable {
    /// TLS 1.3, with the server verified as `ServerTrust` says. The default.
    case tls(ServerTrust)
    /// No TLS: passwords and messages cross the network in clear. Only for debugging, and only
    /// against a server that was also started in plaintext (`parley server --insecure-plaintext`).
    case insecurePlaintext

    /// TLS with trust on first use, remembered in ``ServerTrust/defaultKnownServersFile``.
    public static var `default`: ConnectionSecurity {
        .tls(.trustOnFirstUse(knownServersFile: ServerTrust.defaultKnownServersFile))
    }
}

/// How a client decides that the server it reached is the right one.
public enum ServerTrust: Sendable, Hashable {
    /// The server's certificate must chain to a CA in this PEM file and name the host the client
    /// connects to (for example a certificate from an organisation's internal CA).
    case certificateAuthorities(pemFile: String)
    /// The server's certificate must have exactly this fingerprint (the one the server prints at
    /// start, `parley server` "tls fingerprint ...").
    case fingerprint(CertificateFingerprint)
    /// The first certificate seen at an address ("HOST:PORT") is remembered in this file, as SSH
    /// does with known_hosts; a different certificate at that address later is refused loudly
    /// (``ParleyError/Code/serverNotTrusted``) until its line is removed from the file.
    case trustOnFirstUse(knownServersFile: String)

    /// `$XDG_CONFIG_HOME/parley/known-servers`, or `~/.config/parley/known-servers`.
    public static var defaultKnownServersFile: String {
        let environment = ProcessInfo.processInfo.environment
        if let configuration = environment["XDG_CONFIG_HOME"], !configuration.isEmpty {
            return configuration + "/parley/known-servers"
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "/root"
        return home + "/.config/parley/known-servers"
    }
}
