/// A custom command: an application-chosen name and an opaque payload (docs/PROTOCOL.md
/// section 24), as the recipient's handler sees it.
///
/// A command is either a request, whose handler's return value travels back to the sender as the
/// reply, or fire-and-forget (``expectsReply`` false), whose handler's result is dropped.
public struct Command: Sendable, Hashable {
    /// The most bytes a command name may take in UTF-8.
    public static let maximumNameBytes = 128

    /// The application's name for the command.
    public var name: String
    /// The command's data; Parley never looks into it.
    public var payload: [UInt8]
    /// Who sent it: a user, or ``UserID/server`` for the server application.
    public var sender: UserID
    /// False for a fire-and-forget command: nobody waits for a reply.
    public var expectsReply: Bool

    public init(name: String, payload: [UInt8] = [], sender: UserID, expectsReply: Bool = true) {
        self.name = name
        self.payload = payload
        self.sender = sender
        self.expectsReply = expectsReply
    }

    /// Checks a command name: 1 to ``maximumNameBytes`` bytes of UTF-8, no control characters.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidRequest`` naming the problem.
    public static func validate(name: String) throws(ParleyError) {
        guard !name.isEmpty else {
            throw ParleyError(code: .invalidRequest, message: "a command name must not be empty")
        }
        guard name.utf8.count <= maximumNameBytes else {
            throw ParleyError(
                code: .invalidRequest,
                message: "a command name takes at most \(maximumNameBytes) bytes; this one takes \(name.utf8.count)"
            )
        }
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ParleyError(code: .invalidRequest, message: "a command name must not contain control characters")
        }
    }
}

/// Thrown by a command handler to fail the command with the application's own code and text:
/// the sender gets a ``ParleyError`` with code ``ParleyError/Code/commandFailed``, this code in
/// ``ParleyError/applicationCode`` and this text as its message.
///
/// Any other error a handler throws fails the command the same way, with application code 0 and
/// the error's description as the text.
public struct CommandFailure: Error, Sendable, Hashable {
    /// The application's own code for the failure.
    public var code: UInt32
    /// A readable text for the sender.
    public var text: String

    public init(code: UInt32, text: String) {
        self.code = code
        self.text = text
    }

    /// The error a thrown `error` becomes for the sender.
    public static func parleyError(for error: any Error) -> ParleyError {
        if let failure = error as? CommandFailure {
            return ParleyError(code: .commandFailed, message: failure.text, applicationCode: failure.code)
        }
        if let error = error as? ParleyError, error.code == .commandFailed || error.code == .noHandler {
            return error
        }
        return ParleyError(code: .commandFailed, message: "\(error)", applicationCode: 0)
    }
}

/// How long a command's sender waits for the reply, and the limits a server applies to it.
public enum CommandTimeout {
    /// The default wait when the caller names none.
    public static let `default`: Duration = .seconds(10)
    /// The longest wait a server grants; longer requests are cut to it.
    public static let maximum: Duration = .seconds(300)
}
