/// Why a node-to-node link was refused during its TLS handshake.
///
/// ``Code/impostor`` is the one to shout about: the peer at the address holds a different key than
/// the node that was expected there, so either the node's key changed or someone poses as it.
public struct NodeLinkError: Error, Hashable, Sendable, CustomStringConvertible {
    /// An opaque, extensible error code; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case impostor
            case peerNotAuthorized = "peer-not-authorized"
            case invalidPeerCertificate = "invalid-peer-certificate"
            case handshakeFailed = "handshake-failed"
            case handshakeTimedOut = "handshake-timed-out"
        }

        private let value: Value

        private init(_ value: Value) { self.value = value }

        /// The dialled peer proved a key whose node ID is not the expected one.
        public static let impostor = Code(.impostor)
        /// The accepting side's `authorize` hook refused the dialling node.
        public static let peerNotAuthorized = Code(.peerNotAuthorized)
        /// The peer's certificate is not a self-signed certificate for a P-256 node key.
        public static let invalidPeerCertificate = Code(.invalidPeerCertificate)
        /// TLS failed for another reason (no TLS 1.3, a plain-text peer, a closed connection); see `cause`.
        public static let handshakeFailed = Code(.handshakeFailed)
        /// The handshake did not finish within the handshake timeout.
        public static let handshakeTimedOut = Code(.handshakeTimedOut)

        /// A stable, readable name ("impostor").
        public var name: String { value.rawValue }

        public var description: String { name }
    }

    public var code: Code
    /// A readable explanation for people; never parse it.
    public var message: String
    /// The underlying error, if any.
    public var cause: (any Error & Sendable)?

    public init(code: Code, message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        var text = "\(code.name): \(message)"
        if let cause { text += " (cause: \(cause))" }
        return text
    }

    public static func == (lhs: NodeLinkError, rhs: NodeLinkError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }
}
