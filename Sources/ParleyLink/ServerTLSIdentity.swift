import Crypto
import Foundation
public import NIOCore
import NIOSSL
import NIOTLS
public import ParleyCore
import ParleyWire
import SwiftASN1
import X509

/// The certificate and key a Parley server presents to its clients (TLS 1.3).
///
/// Either the admin's own certificate chain and key (PEM files, e.g. from an internal CA), or a
/// self-signed certificate the server makes at first start and keeps in its data directory
/// (``keyFileName``, mode 0600, and ``certificateFileName``). Clients of a self-signed server
/// pin its ``fingerprint`` or trust it on first use.
public struct ServerTLSIdentity: Sendable {
    /// The private key of the self-signed certificate, in the data directory (mode 0600).
    public static let keyFileName = "server-key.pem"
    /// The self-signed certificate, in the data directory.
    public static let certificateFileName = "server-cert.pem"

    /// The SHA-256 fingerprint of the certificate the server presents (the chain's first).
    public let fingerprint: CertificateFingerprint
    /// Where the certificate came from, for logs ("self-signed ..." or the PEM file).
    public let source: String
    let context: NIOSSLContext

    /// Loads the certificate chain and private key an admin gave (PEM files).
    public init(certificateChainFile: String, privateKeyFile: String) throws(TLSSetupError) {
        try self.init(certificateChainFile: certificateChainFile, privateKeyFile: privateKeyFile, source: nil)
    }

    /// - Parameter source: how logs name it; nil: the chain's file.
    private init(certificateChainFile: String, privateKeyFile: String, source: String?) throws(TLSSetupError) {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateChainFile)
        } catch {
            throw TLSSetupError(path: certificateChainFile, message: "cannot read the certificate (PEM)", cause: error)
        }
        guard !chain.isEmpty else {
            throw TLSSetupError(path: certificateChainFile, message: "the file holds no PEM certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: privateKeyFile, format: .pem)
        } catch {
            throw TLSSetupError(path: privateKeyFile, message: "cannot read the private key (PEM)", cause: error)
        }
        try self.init(chain: chain, key: key, source: source ?? certificateChainFile)
    }

    /// The self-signed certificate in `dataDirectory`, made (with a new P-256 key) if there is none.
    ///
    /// - Returns: the identity, and whether it was made just now (the server then prints its
    ///   fingerprint for clients to pin).
    public static func selfSigned(dataDirectory: String) throws(TLSSetupError) -> (ServerTLSIdentity, created: Bool) {
        let directory = URL(fileURLWithPath: dataDirectory)
        let keyPath = directory.appendingPathComponent(keyFileName).path
        let certificatePath = directory.appendingPathComponent(certificateFileName).path
        var created = false
        if !FileManager.default.fileExists(atPath: keyPath) {
            do {
                try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
            } catch {
                throw TLSSetupError(path: dataDirectory, message: "cannot create the data directory", cause: error)
            }
            let key = P256.Signing.PrivateKey()
            do {
                created = try PrivateFile.createExclusively(
                    path: keyPath,
                    directory: dataDirectory,
                    contents: Array(key.pemRepresentation.utf8)
                )
            } catch {
                throw TLSSetupError(path: keyPath, message: error.message)
            }
        }
        if created || !FileManager.default.fileExists(atPath: certificatePath) {
            try writeSelfSignedCertificate(keyPath: keyPath, certificatePath: certificatePath)
            created = true
        }
        let identity = try ServerTLSIdentity(
            certificateChainFile: certificatePath,
            privateKeyFile: keyPath,
            source: "self-signed (\(certificatePath))"
        )
        return (identity, created)
    }

    private init(chain: [NIOSSLCertificate], key: NIOSSLPrivateKey, source: String) throws(TLSSetupError) {
        let leafDER: [UInt8]
        do {
            leafDER = try chain[0].toDERBytes()
        } catch {
            throw TLSSetupError(path: source, message: "cannot encode the certificate", cause: error)
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv13
        do {
            self.context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError(
                path: source,
                message: "the certificate and the private key cannot be used together",
                cause: error
            )
        }
        self.fingerprint = CertificateFingerprint(sha256Of: leafDER)
        self.source = source
    }

    /// Writes a self-signed certificate (20 years) for the key in `keyPath`.
    private static func writeSelfSignedCertificate(keyPath: String, certificatePath: String) throws(TLSSetupError) {
        let pem: String
        do {
            let key = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: keyPath, encoding: .utf8))
            let host = ProcessInfo.processInfo.hostName
            let certificate = try Certificate.makeSelfSigned(
                key: key,
                name: try DistinguishedName {
                    OrganizationName("Parley")
                    CommonName("parley server \(host)")
                },
                usages: [.serverAuth],
                alternativeNames: [.dnsName(host), .dnsName("localhost")]
            )
            pem = try certificate.serializeAsPEM().pemString + "\n"
        } catch {
            throw TLSSetupError(
                path: keyPath, message: "cannot make a self-signed certificate for this key", cause: error)
        }
        do {
            let temporary = certificatePath + ".\(UUID().uuidString).tmp"
            try pem.write(toFile: temporary, atomically: false, encoding: .utf8)
            // rename(2) replaces a stale certificate (one whose key was lost) in one step.
            guard rename(temporary, certificatePath) == 0 else {
                let code = errno
                unlink(temporary)
                throw TLSSetupError(
                    path: certificatePath,
                    message: "cannot put the certificate in place: \(String(cString: strerror(code)))"
                )
            }
        } catch let error as TLSSetupError {
            throw error
        } catch {
            throw TLSSetupError(path: certificatePath, message: "cannot write the certificate", cause: error)
        }
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds the server side of client-server TLS in front of the Parley link handlers.
    ///
    /// A client that sends a plain Parley frame instead of a TLS handshake gets a plain fatal
    /// ERROR frame that says the server requires TLS, then the connection closes.
    ///
    /// - Parameter onHandshake: called once per connection with the handshake's outcome (true:
    ///   completed), for metrics; it runs on the channel's event loop.
    public func addParleyServerTLSHandlers(
        identity: ServerTLSIdentity,
        onHandshake: @escaping @Sendable (Bool) -> Void = { _ in }
    ) throws {
        try addHandler(TLSRequiredHandler())
        try addHandler(NIOSSLServerHandler(context: identity.context))
        try addHandler(TLSHandshakeObserver(onHandshake: onHandshake))
    }
}

/// Reports whether a connection's TLS handshake completed, once, then gets out of the way.
final class TLSHandshakeObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let onHandshake: @Sendable (Bool) -> Void
    private var reported = false

    init(onHandshake: @escaping @Sendable (Bool) -> Void) {
        self.onHandshake = onHandshake
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent, !reported {
            reported = true
            onHandshake(true)
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !reported {
            reported = true
            onHandshake(false)
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Closed before the handshake finished (a port scan, a plaintext client).
        if !reported {
            reported = true
            onHandshake(false)
        }
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension TLSHandshakeObserver: Sendable {}

/// Answers a client that starts without TLS with a readable refusal instead of a handshake error.
///
/// A TLS connection starts with a handshake record (first byte 0x16). A Parley frame starts with its
/// length, and a first byte of 0x16 would mean a frame of over 369 MB, which no server accepts,
/// so one byte tells the two apart.
final class TLSRequiredHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        if first == 0x16 {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
            return
        }
        let refusal = ParleyError(
            code: .protocolViolation,
            message: "this server requires TLS; connect with TLS, or start both the server and the client "
                + "with --insecure-plaintext (for debugging only)"
        )
        context.writeAndFlush(NIOAny(Frame.error(refusal, requestID: 0, fatal: true).encoded()), promise: nil)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension TLSRequiredHandler: Sendable {}

/// Why a certificate, a key or a trust file could not be used.
public struct TLSSetupError: Error, Sendable, CustomStringConvertible {
    /// The file concerned.
    public var path: String
    /// A readable explanation for people; never parse it.
    public var message: String
    /// The underlying error, if any.
    public var cause: (any Error & Sendable)?

    public init(path: String, message: String, cause: (any Error & Sendable)? = nil) {
        self.path = path
        self.message = message
        self.cause = cause
    }

    public var description: String {
        var text = "\(message) (\(path))"
        if let cause { text += " (cause: \(cause))" }
        return text
    }
}

extension CertificateFingerprint {
    /// The fingerprint of a certificate's DER encoding.
    package init(sha256Of der: some Sequence<UInt8>) {
        // A SHA-256 digest is always 32 bytes.
        self.init(digest: Array(SHA256.hash(data: Array(der))))!
    }
}
