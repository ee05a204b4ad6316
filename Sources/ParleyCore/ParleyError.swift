/// An error from Parley: a stable code, a readable message and, optionally, the error beneath.
///
/// Codes are shared with the wire protocol: ``ParleyError/Code/wireValue`` is the number that
/// travels in ERROR frames (docs/PROTOCOL.md lists them). A code this version does not know
/// (sent by a newer peer) keeps its number and compares unequal to every known code.
public struct ParleyError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The stable number carried by ERROR frames.
        public let wireValue: UInt32

        public init(wireValue: UInt32) { self.wireValue = wireValue }

        // Connection and framing (1-9)
        /// The byte stream broke the protocol; the connection is closed.
        public static let protocolViolation = Code(wireValue: 1)
        /// A frame's length field exceeded the receiver's maximum; the connection is closed.
        public static let frameTooLarge = Code(wireValue: 2)
        /// No protocol version in common.
        public static let unsupportedVersion = Code(wireValue: 3)
        /// The frame type is not known to the receiver.
        public static let unknownRequest = Code(wireValue: 4)
        /// A request's meta could not be decoded or a field is invalid.
        public static let invalidRequest = Code(wireValue: 5)
        /// The request needs a logged-on session.
        public static let notLoggedOn = Code(wireValue: 6)
        /// The connection is logged on already (log off first).
        public static let alreadyLoggedOn = Code(wireValue: 7)
        /// The first frame on a connection must be HELLO.
        public static let handshakeRequired = Code(wireValue: 8)

        // Accounts (10-19)
        /// Unknown user ID or wrong password (deliberately not told apart).
        public static let invalidCredentials = Code(wireValue: 10)
        /// Too many failed logons; retry later.
        public static let tooManyAttempts = Code(wireValue: 11)
        /// The user has a session on another connection.
        public static let sessionExists = Code(wireValue: 12)
        /// This session was replaced by a newer logon of the same user.
        public static let sessionReplaced = Code(wireValue: 13)

        // Directory (20-29)
        public static let userNotFound = Code(wireValue: 20)
        public static let userAlreadyExists = Code(wireValue: 21)
        /// A requested user ID is reserved or below the server's minimum.
        public static let invalidUserID = Code(wireValue: 22)
        /// No free user ID is left.
        public static let userIDsExhausted = Code(wireValue: 23)

        // Messages (30-39)
        public static let invalidUTF8 = Code(wireValue: 30)
        public static let tooManyRecipients = Code(wireValue: 31)
        /// The recipient is not a registered user.
        public static let recipientNotFound = Code(wireValue: 32)
        /// No server application takes messages on this server.
        public static let serverApplicationUnavailable = Code(wireValue: 33)
        /// The server application refused the message (or did not decide in time); nothing was
        /// stored or delivered. The message says why.
        public static let messageRejected = Code(wireValue: 34)

        // Server and limits (40-49)
        public static let tooManyConnections = Code(wireValue: 40)
        public static let shuttingDown = Code(wireValue: 41)
        public static let idleTimeout = Code(wireValue: 42)
        /// The connection could not keep up with what was sent to it.
        public static let slowConsumer = Code(wireValue: 43)
        /// An admin closed this session (the message carries the admin's reason). Fatal; clients
        /// do not reconnect by themselves after it.
        public static let kicked = Code(wireValue: 44)

        // Failures (50-59)
        public static let internalError = Code(wireValue: 50)
        public static let storageError = Code(wireValue: 51)

        // Peers and node links (60-69)
        /// A peer presented a key other than the one pinned for its node or user (trust on
        /// first use); the link is refused.
        public static let pinnedKeyMismatch = Code(wireValue: 60)

        // Contacts and presence (70-79)
        /// The user is not in the requester's contact list (update, remove).
        public static let contactNotFound = Code(wireValue: 70)
        /// The contact list is full (the server's maximum list size).
        public static let tooManyContacts = Code(wireValue: 71)
        /// A presence state or status text the server does not accept (unknown state, text too long).
        public static let invalidPresence = Code(wireValue: 72)
        /// The server application refused to add the contact.
        public static let contactRefused = Code(wireValue: 73)

        // Custom commands (80-89)
        /// The recipient has no handler for the command's name.
        public static let noHandler = Code(wireValue: 80)
        /// The recipient's handler failed; ``ParleyError/applicationCode`` holds its own code
        /// and ``ParleyError/message`` its text.
        public static let commandFailed = Code(wireValue: 81)
        /// The recipient is not logged on (and the command was not to be stored).
        public static let recipientOffline = Code(wireValue: 82)
        /// No reply came within the caller's timeout.
        public static let commandTimedOut = Code(wireValue: 83)
        /// A reply to a command that no longer waits (it timed out, or its sender left).
        public static let commandNotPending = Code(wireValue: 84)

        // Message history (90-99)
        /// The server keeps no message history (it is off: `parley server --history-days N`
        /// turns it on).
        public static let historyUnavailable = Code(wireValue: 90)
        /// A history cursor that is not one the server (or node) gave.
        public static let invalidHistoryCursor = Code(wireValue: 91)
        // File and stream transfer (100-109, docs/PROTOCOL.md section 26)
        /// The server holds no such transfer, or it is not the requester's.
        public static let transferNotFound = Code(wireValue: 100)
        /// The file is larger than the server's maximum file size.
        public static let fileTooLarge = Code(wireValue: 101)
        /// The recipient's quota of bytes held by the server would be exceeded.
        public static let transferQuotaExceeded = Code(wireValue: 102)
        /// A chunk's offset (or the final size) is not the server's offset.
        public static let transferOffsetMismatch = Code(wireValue: 103)
        /// The SHA-256 of the bytes does not match the one given.
        public static let transferHashMismatch = Code(wireValue: 104)
        /// The server application refused the transfer.
        public static let transferRefused = Code(wireValue: 105)
        /// The file name is empty, too long, or holds a path separator or control character.
        public static let invalidFileName = Code(wireValue: 106)
        /// The request does not fit the transfer's phase (a chunk after the end, a read before it).
        public static let transferNotReady = Code(wireValue: 107)

        // Client-side conditions (never on the wire)
        /// No connection to the server (not yet, or lost).
        public static let notConnected = Code(wireValue: 1000)
        /// The request got no answer in time.
        public static let timedOut = Code(wireValue: 1001)
        /// The client was shut down.
        public static let cancelled = Code(wireValue: 1002)
        /// The server's TLS certificate is not the one this client trusts (a pinned or first-use
        /// fingerprint that differs, or no chain to the configured CA). Never retried.
        public static let serverNotTrusted = Code(wireValue: 1003)

        public static let known: [Code] = [
            .protocolViolation, .frameTooLarge, .unsupportedVersion, .unknownRequest, .invalidRequest,
            .notLoggedOn, .alreadyLoggedOn, .handshakeRequired, .invalidCredentials, .tooManyAttempts,
            .sessionExists, .sessionReplaced, .userNotFound, .userAlreadyExists, .invalidUserID,
            .userIDsExhausted, .invalidUTF8, .tooManyRecipients, .recipientNotFound,
            .serverApplicationUnavailable, .messageRejected, .tooManyConnections, .shuttingDown, .idleTimeout,
            .slowConsumer, .kicked, .internalError, .storageError, .pinnedKeyMismatch, .contactNotFound,
            .tooManyContacts, .invalidPresence, .contactRefused, .noHandler, .commandFailed, .recipientOffline,
            .commandTimedOut, .commandNotPending, .historyUnavailable, .invalidHistoryCursor, .transferNotFound,
            .fileTooLarge, .transferQuotaExceeded, .transferOffsetMismatch, .transferHashMismatch, .transferRefused,
            .invalidFileName, .transferNotReady, .notConnected, .timedOut, .cancelled,
            .serverNotTrusted,
        ]

        /// A stable, readable name ("not-logged-on"), or "code-N" for codes this version lacks.
        public var name: String {
            switch wireValue {
            case 1: "protocol-violation"
            case 2: "frame-too-large"
            case 3: "unsupported-version"
            case 4: "unknown-request"
            case 5: "invalid-request"
            case 6: "not-logged-on"
            case 7: "already-logged-on"
            case 8: "handshake-required"
            case 10: "invalid-credentials"
            case 11: "too-many-attempts"
            case 12: "session-exists"
            case 13: "session-replaced"
            case 20: "user-not-found"
            case 21: "user-already-exists"
            case 22: "invalid-user-id"
            case 23: "user-ids-exhausted"
            case 30: "invalid-utf8"
            case 31: "too-many-recipients"
            case 32: "recipient-not-found"
            case 33: "server-application-unavailable"
            case 34: "message-rejected"
            case 40: "too-many-connections"
            case 41: "shutting-down"
            case 42: "idle-timeout"
            case 43: "slow-consumer"
            case 44: "kicked"
            case 50: "internal-error"
            case 51: "storage-error"
            case 60: "pinned-key-mismatch"
            case 70: "contact-not-found"
            case 71: "too-many-contacts"
            case 72: "invalid-presence"
            case 73: "contact-refused"
            case 80: "no-handler"
            case 81: "command-failed"
            case 82: "recipient-offline"
            case 83: "command-timed-out"
            case 84: "command-not-pending"
            case 90: "history-unavailable"
            case 91: "invalid-history-cursor"
            case 100: "transfer-not-found"
            case 101: "file-too-large"
            case 102: "transfer-quota-exceeded"
            case 103: "transfer-offset-mismatch"
            case 104: "transfer-hash-mismatch"
            case 105: "transfer-refused"
            case 106: "invalid-file-name"
            case 107: "transfer-not-ready"
            case 1000: "not-connected"
            case 1001: "timed-out"
            case 1002: "cancelled"
            case 1003: "server-not-trusted"
            default: "code-\(wireValue)"
            }
        }

        public var description: String { name }
    }

    public var code: Code
    /// A readable explanation for people; never parse it.
    public var message: String
    /// When set, the earliest moment a retry can succeed, in milliseconds from now.
    public var retryAfterMilliseconds: UInt32?
    /// The underlying error, if any (not sent on the wire).
    public var cause: (any Error & Sendable)?
    /// With ``Code/commandFailed``: the code the command's handler failed with, chosen by the
    /// application (``CommandFailure/code``).
    public var applicationCode: UInt32?

    public init(
        code: Code,
        message: String,
        retryAfterMilliseconds: UInt32? = nil,
        applicationCode: UInt32? = nil,
        cause: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.message = message
        self.retryAfterMilliseconds = retryAfterMilliseconds
        self.applicationCode = applicationCode
        self.cause = cause
    }

    public var description: String {
        var text = "\(code.name) (\(code.wireValue)): \(message)"
        if let applicationCode { text += " (application code \(applicationCode))" }
        if let cause { text += " (cause: \(cause))" }
        return text
    }

    public static func == (lhs: ParleyError, rhs: ParleyError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
            && lhs.retryAfterMilliseconds == rhs.retryAfterMilliseconds && lhs.applicationCode == rhs.applicationCode
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }
}
