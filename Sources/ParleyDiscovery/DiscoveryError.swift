/// An error from LAN discovery: a stable code, a readable message and, optionally, the error
/// beneath (such as the backend's own error).
public struct DiscoveryError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong. New codes may be added; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A stable number for logs and metrics.
        public let rawValue: UInt16

        public init(rawValue: UInt16) { self.rawValue = rawValue }

        /// The record cannot be advertised as given (a field too long, an empty node ID, ...).
        public static let invalidRecord = Code(rawValue: 1)
        /// ``Discovery/update(_:)`` before ``Discovery/advertise(_:)``.
        public static let notAdvertising = Code(rawValue: 2)
        /// The discovery service was shut down.
        public static let shutDown = Code(rawValue: 3)
        /// `run()` was called more than once.
        public static let alreadyRunning = Code(rawValue: 4)
        /// The discovery daemon (or its message bus) is not reachable.
        public static let daemonUnavailable = Code(rawValue: 10)
        /// The advertised name collided with another service.
        public static let nameCollision = Code(rawValue: 11)
        /// The backend did not answer in time.
        public static let timedOut = Code(rawValue: 12)
        /// Any other failure reported by the backend.
        public static let backendFailure = Code(rawValue: 13)

        public var name: String {
            switch rawValue {
            case 1: "invalid-record"
            case 2: "not-advertising"
            case 3: "shut-down"
            case 4: "already-running"
            case 10: "daemon-unavailable"
            case 11: "name-collision"
            case 12: "timed-out"
            case 13: "backend-failure"
            default: "code-\(rawValue)"
            }
        }

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

    public static func == (lhs: DiscoveryError, rhs: DiscoveryError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }
}
