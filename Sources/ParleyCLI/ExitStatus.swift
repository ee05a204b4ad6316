import ArgumentParser
import ParleyCore

/// The exit codes of `parley`, documented in the root command's help.
enum ExitStatus {
    static let failure = ExitCode(1)
    /// A usage error: bad option or argument.
    static let usage = ExitCode(2)
    /// The server could not be reached.
    static let cannotConnect = ExitCode(3)
    /// The server answered with a refusal: wrong password, unknown user, taken user ID, ...
    static let refused = ExitCode(4)
    /// `send`: at least one recipient's result is a failure (all results are printed).
    static let recipientFailed = ExitCode(5)
    /// Fewer messages, receipts or deliveries than expected arrived before the timeout.
    static let incomplete = ExitCode(6)

    /// The exit code for an error from the Parley client.
    static func code(for error: ParleyError) -> ExitCode {
        switch error.code {
        case .notConnected:
            cannotConnect
        case .timedOut, .cancelled, .internalError, .storageError, .protocolViolation, .frameTooLarge,
            .unsupportedVersion:
            failure
        default:
            // Every other code comes from the server and says no to this request.
            error.code.wireValue < 1000 ? refused : failure
        }
    }
}

/// A failure found by the CLI itself (not by the server), with its exit code.
struct CommandFailure: Error {
    var message: String
    var exitCode: ExitCode = ExitStatus.failure
}
