import Foundation
public import NIOCore
import NIOSSL
public import ParleyCore
import Synchronization

/// The client side of client-server TLS: checks the server's certificate as a ``ServerTrust``
/// says, and remembers what it decided so the caller can explain a refusal and record a first use.
///
/// Use one verifier per connection attempt: make it (it reads the known-servers file), add its
/// handlers to the channel, and once the server has answered through the link (the handshake is
/// complete), call ``recordFirstUse()``.
public final class ServerTrustVerifier: Sendable {
    private let trust: ServerTrust
    /// "HOST:PORT" as the client was told to reach it: the key of the known-servers file.
    private let address: String
    private let host: String
    private let known: CertificateFingerprint?
    private let decision = Mutex<Decision>(.pending)

    private enum Decision {
        case pending
        case accepted(CertificateFingerprint, firstUse: Bool)
        case refused(ParleyError)
    }

    /// - Throws: ``TLSSetupError`` when the known-servers file exists but cannot be read.
    public init(trust: ServerTrust, host: String, port: Int) throws(TLSSetupError) {
        self.trust = trust
        self.host = host
        self.address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        if case .trustOnFirstUse(let file) = trust {
            self.known = try KnownServersFile(path: file).fingerprint(of: address)
        } else {
            self.known = nil
        }
    }

    /// The certificate was refused: why, in words for the user.
    public var refusal: ParleyError? {
        if case .refused(let error) = decision.withLock({ $0 }) { return error }
        return nil
    }

    /// The fingerprint of the certificate the server presented, once it was accepted.
    public var acceptedFingerprint: CertificateFingerprint? {
        if case .accepted(let fingerprint, _) = decision.withLock({ $0 }) { return fingerprint }
        return nil
    }

    /// Adds TLS (1.3 only) in front of the channel's other handlers.
    public func addHandlers(to pipeline: ChannelPipeline.SynchronousOperations) throws {
        try handlerMaker()(pipeline)
    }

    /// Adds TLS as ``addHandlers(to:)`` does, to many connections to the same server (a load
    /// generator's): the TLS context is made once, and each call adds a handler that checks the
    /// server's certificate as this verifier does.
    public func handlerMaker() throws -> @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        switch trust {
        case .certificateAuthorities(let file):
            configuration.trustRoots = .file(file)
            configuration.certificateVerification = .fullVerification
            let context = try NIOSSLContext(configuration: configuration)
            // SNI carries host names only; an IP address is checked against the certificate's
            // IP address entries from the socket's peer address.
            let isAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
            let serverHostname = isAddress ? nil : host
            return { pipeline in
                try pipeline.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverHostname))
            }
        case .fingerprint, .trustOnFirstUse:
            // A mode that verifies, with the callback replacing BoringSSL's chain checks.
            configuration.certificateVerification = .noHostnameVerification
            configuration.trustRoots = .certificates([])
            let context = try NIOSSLContext(configuration: configuration)
            return { [self] pipeline in
                let handler = try NIOSSLClientHandler(context: context, serverHostname: nil) {
                    [self] certificates, promise in
                    promise.succeed(verify(certificates))
                }
                try pipeline.addHandler(handler)
            }
        }
    }

    /// Explains a TLS failure of this connection: the refusal if the certificate was refused,
    /// else a readable version of `error`.
    public func explain(_ error: any Error) -> ParleyError {
        if let refusal { return refusal }
        if case .certificateAuthorities(let file) = trust, "\(error)".contains("CERTIFICATE_VERIFY_FAILED") {
            return ParleyError(
                code: .serverNotTrusted,
                message: "the certificate of the server at \(address) does not chain to a CA in \(file), "
                    + "or does not name \(host)",
                cause: error
            )
        }
        return ParleyError(
            code: .notConnected,
            message: "the TLS handshake with \(address) failed (if the server runs with --insecure-plaintext, "
                + "the client needs --insecure-plaintext too)",
            cause: error
        )
    }

    /// After a completed handshake: remembers a server seen for the first time (trust on first use).
    ///
    /// - Returns: the fingerprint recorded, if this was a first use.
    @discardableResult
    public func recordFirstUse() throws(TLSSetupError) -> CertificateFingerprint? {
        guard case .trustOnFirstUse(let file) = trust,
            case .accepted(let fingerprint, firstUse: true) = decision.withLock({ $0 })
        else { return nil }
        try KnownServersFile(path: file).remember(fingerprint, for: address)
        return fingerprint
    }

    private func verify(_ certificates: [NIOSSLCertificate]) -> NIOSSLVerificationResult {
        let result: Decision
        if let leaf = certificates.first, let der = try? leaf.toDERBytes() {
            let presented = CertificateFingerprint(sha256Of: der)
            result = decide(presented)
        } else {
            result = .refused(
                ParleyError(
                    code: .serverNotTrusted, message: "the server at \(address) presented no usable certificate")
            )
        }
        decision.withLock { $0 = result }
        if case .accepted = result { return .certificateVerified }
        return .failed
    }

    private func decide(_ presented: CertificateFingerprint) -> Decision {
        switch trust {
        case .fingerprint(let pinned):
            guard presented == pinned else {
                return .refused(
                    ParleyError(
                        code: .serverNotTrusted,
                        message: "the server at \(address) presented certificate \(presented), not the pinned "
                            + "\(pinned); refusing it (someone may be posing as the server)"
                    )
                )
            }
            return .accepted(presented, firstUse: false)
        case .trustOnFirstUse(let file):
            guard let known else { return .accepted(presented, firstUse: true) }
            guard presented == known else {
                return .refused(
                    ParleyError(
                        code: .serverNotTrusted,
                        message: """
                            WARNING: THE CERTIFICATE OF THE SERVER AT \(address) HAS CHANGED. It was \(known) \
                            when first used and is now \(presented). Someone may be posing as the server, or \
                            its certificate was replaced. Refusing to connect. If the change is expected, \
                            remove the line for \(address) from \(file)
                            """
                    )
                )
            }
            return .accepted(presented, firstUse: false)
        case .certificateAuthorities:
            return .accepted(presented, firstUse: false)
        }
    }
}

/// The known-servers file of trust on first use: one "HOST:PORT sha256:HEX" line per server.
struct KnownServersFile {
    let path: String

    func fingerprint(of address: String) throws(TLSSetupError) -> CertificateFingerprint? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw TLSSetupError(path: path, message: "cannot read the known-servers file", cause: error)
        }
        // The last line for an address wins, so an appended line replaces an older one.
        var found: CertificateFingerprint?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, fields[0] == address, let fingerprint = CertificateFingerprint(String(fields[1]))
            else { continue }
            found = fingerprint
        }
        return found
    }

    func remember(_ fingerprint: CertificateFingerprint, for address: String) throws(TLSSetupError) {
        let directory = (path as NSString).deletingLastPathComponent
        do {
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: Data("\(address) \(fingerprint)\n".utf8))
        } catch {
            throw TLSSetupError(path: path, message: "cannot write the known-servers file", cause: error)
        }
    }
}
