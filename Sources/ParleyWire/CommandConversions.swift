package import NIOCore
package import ParleyCore

// Custom commands on the wire (docs/PROTOCOL.md section 24).

extension Parley_V1_CommandRequest {
    /// The request for command `name` to `recipient`.
    package init(name: String, recipient: UserID, timeout: Duration, fireAndForget: Bool, storeIfOffline: Bool = false)
    {
        self.init()
        self.name = name
        self.recipient = recipient.rawValue
        let (seconds, attoseconds) = timeout.components
        self.timeoutMs =
            fireAndForget ? 0 : UInt32(clamping: max(seconds * 1000 + attoseconds / 1_000_000_000_000_000, 1))
        self.fireAndForget = fireAndForget
        self.storeIfOffline = storeIfOffline
    }

    /// Checks the name and the flags.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidRequest` for a bad name, or
    ///   `store_if_offline` without `fire_and_forget`.
    package func validate() throws(ParleyError) {
        try Command.validate(name: name)
        if storeIfOffline && !fireAndForget {
            throw ParleyError(
                code: .invalidRequest, message: "store_if_offline is only for fire-and-forget commands")
        }
    }

    /// How long the caller waits: the default for 0, cut to the maximum.
    package var timeout: Duration {
        guard timeoutMs > 0 else { return CommandTimeout.default }
        return min(.milliseconds(Int64(timeoutMs)), CommandTimeout.maximum)
    }
}

extension Parley_V1_CommandReply {
    /// The reply to command `id`: its payload travels in the frame's payload section.
    package init(commandID: UInt64, _ result: Result<[UInt8], ParleyError>) {
        self.init()
        self.commandID = commandID
        if case .failure(let error) = result {
            let code: ParleyError.Code = error.code == .noHandler ? .noHandler : .commandFailed
            errorCode = code.wireValue
            applicationCode = code == .commandFailed ? error.applicationCode ?? 0 : 0
            text = error.message
        }
    }

    /// What the replier said: the reply payload, or the error the command's sender gets.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidRequest` for an error code other
    ///   than 0, NO_HANDLER and COMMAND_FAILED.
    package func outcome(payload: ByteBuffer) throws(ParleyError) -> Result<ByteBuffer, ParleyError> {
        switch errorCode {
        case 0:
            return .success(payload)
        case ParleyError.Code.noHandler.wireValue:
            return .failure(ParleyError(code: .noHandler, message: text.isEmpty ? "no handler" : text))
        case ParleyError.Code.commandFailed.wireValue:
            return .failure(ParleyError(code: .commandFailed, message: text, applicationCode: applicationCode))
        default:
            throw ParleyError(
                code: .invalidRequest,
                message: "COMMAND_REPLY error_code must be 0, 80 or 81; got \(errorCode)"
            )
        }
    }
}

extension Parley_V1_CommandEvent {
    /// The command as its recipient's handler sees it.
    package func command(payload: ByteBuffer) -> Command {
        Command(
            name: name,
            payload: Array(payload.readableBytesView),
            sender: UserID(sender),
            expectsReply: !fireAndForget
        )
    }
}
