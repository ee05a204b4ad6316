/// Why a node's key could not be loaded or created.
public struct NodeIdentityError: Error, Hashable, Sendable, CustomStringConvertible {
    /// An opaque, extensible error code; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case corruptKeyFile = "corrupt-key-file"
            case keyFileAccess = "key-file-access"
            case certificateFailed = "certificate-failed"
        }

        private let value: Value

        private init(_ value: Value) { self.value = value }

        /// The key file exists but does not hold a P-256 private key in PEM. It is left untouched:
        /// replacing it would give the node a new ID.
        public static let corruptKeyFile = Code(.corruptKeyFile)
        /// The key file or its directory could not be read, created or written.
        public static let keyFileAccess = Code(.keyFileAccess)
        /// The certificate for the key could not be made or loaded into TLS.
        public static let certificateFailed = Code(.certificateFailed)

        /// A stable, readable name ("corrupt-key-file").
        public var name: String { value.rawValue }

        public var description: String { name }
    }

    public var code: Code
    /// The key file concerned, if any.
    public var path: String?
    /// A readable explanation for people; never parse it.
    public var message: String
    /// The underlying error, if any.
    public var cause: (any Error & Sendable)?

    public init(code: Code, path: String? = nil, message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.path = path
        self.message = message
        self.cause = cause
    }

    public var description: String {
        var text = "\(code.name): \(message)"
        if let path { text += " (\(path))" }
        if let cause { text += " (cause: \(cause))" }
        return text
    }

    public static func == (lhs: NodeIdentityError, rhs: NodeIdentityError) -> Bool {
        lhs.code == rhs.code && lhs.path == rhs.path && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(path)
        hasher.combine(message)
    }
}
