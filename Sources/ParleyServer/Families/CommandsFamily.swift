import Foundation
import NIOCore
import ParleyCore
import ParleyLink
import ParleyServerStore
import ParleyWire

/// Custom commands (docs/PROTOCOL.md section 24): SEND_COMMAND, COMMAND_REPLY, and this
/// connection's COMMAND events.
///
/// A command to the server (recipient 0) runs the server application's handler for its name
/// (``ServerCommands``) in a child task of the server's `run()`; a command to a user is pushed
/// to that user's session as a COMMAND event and the reply, a COMMAND_REPLY from that session,
/// is correlated back through the server-wide ``CommandTable``, which also applies the caller's
/// timeout. A waiting SEND_COMMAND counts as one of the connection's unanswered requests.
final class CommandsFamily: RequestFamily, Sendable {
    private static let types: [FrameType] = [.sendCommand, .commandReply]

    var requestTypes: [FrameType] { Self.types }

    func handle(_ frame: Frame, in session: SessionContext) throws(ParleyError) {
        let user = try session.requireUser()
        switch frame.type {
        case .sendCommand:
            try send(frame, from: user, in: session)
        case .commandReply:
            let reply: Parley_V1_CommandReply = try frame.decodeMeta()
            let result = try reply.outcome(payload: frame.payload)
            guard session.server.pendingCommands.complete(reply.commandID, from: session.sessionID, with: result)
            else {
                session.logger.debug("dropped a late command reply", metadata: ["command.id": "\(reply.commandID)"])
                throw ParleyError(
                    code: .commandNotPending,
                    message: "command \(reply.commandID) no longer waits for a reply (timed out or its sender left)"
                )
            }
            session.respond(to: frame, with: Parley_V1_Empty())
        default:
            throw ParleyError(code: .unknownRequest, message: "unknown frame type \(frame.type)")
        }
    }

    /// The most fire-and-forget commands the server keeps for one offline recipient.
    static let maximumStored = 1000

    func sessionStarted(in session: SessionContext) {
        guard let user = session.identity.user else { return }
        session.connection.pushStoredCommands(of: user)
    }

    func sessionEnded(_ user: UserID, in session: SessionContext) {
        session.server.pendingCommands.recipientLeft(session.sessionID, user: user)
    }

    private func send(_ frame: Frame, from user: UserID, in session: SessionContext) throws(ParleyError) {
        let request: Parley_V1_CommandRequest = try frame.decodeMeta()
        try request.validate()
        guard let caller = session.handle else { return }
        let server = session.server
        var event = Parley_V1_CommandEvent()
        event.sender = user.rawValue
        event.name = request.name
        event.fireAndForget = request.fireAndForget
        event.sentAtMs = Date().millisecondsSince1970
        let recipient = UserID(request.recipient)
        if recipient == .server {
            try sendToApplication(frame, request, from: user, in: session)
            return
        }
        guard let target = server.registry.session(for: recipient) else {
            guard request.storeIfOffline else {
                throw ParleyError(code: .recipientOffline, message: "user \(recipient) is not logged on")
            }
            let command = StoredCommand(
                sender: user, name: request.name, payload: Array(frame.payload.readableBytesView), storedAt: Date())
            session.query(frame) { server throws(ParleyError) in
                try server.store.storeCommand(command, for: recipient, maximum: Self.maximumStored)
                // Logged on meanwhile: its logon may have taken the stored commands already.
                server.registry.session(for: recipient)?.execute { $0.pushStoredCommands(of: recipient) }
                return Self.response(.commandStored)
            }
            return
        }
        if request.fireAndForget {
            let pushed = event
            target.execute { $0.deliverCommand(pushed, payload: frame.payload, to: recipient) }
            session.respond(to: frame, with: Self.response(.commandDelivered))
            return
        }
        let timeout = request.timeout
        event.timeoutMs = timeout.wireMilliseconds
        session.requestStarted(query: false)
        event.commandID = server.pendingCommands.add(
            name: request.name,
            timeout: timeout,
            recipient: target.id,
            on: caller.eventLoop
        ) { result in
            caller.execute { $0.commandFinished(frame, result) }
        }
        let pushed = event
        target.execute { $0.deliverCommand(pushed, payload: frame.payload, to: recipient) }
    }

    /// A command to the server application: its handler runs in the server's `run()`.
    private func sendToApplication(
        _ frame: Frame,
        _ request: Parley_V1_CommandRequest,
        from user: UserID,
        in session: SessionContext
    ) throws(ParleyError) {
        guard let caller = session.handle else { return }
        let server = session.server
        guard let handler = server.commands.table.handler(for: request.name) else {
            throw ParleyError(code: .noHandler, message: "the server has no handler for command \"\(request.name)\"")
        }
        let command = Command(
            name: request.name,
            payload: Array(frame.payload.readableBytesView),
            sender: user,
            expectsReply: !request.fireAndForget
        )
        let logger = session.logger
        let handlers = server.commands.table
        if request.fireAndForget {
            let queued = handlers.submit(handler, for: command) { result in
                if case .failure(let error) = result {
                    logger.debug(
                        "a fire-and-forget command failed",
                        metadata: ["command": "\(command.name)", "error": "\(error)"])
                }
            }
            guard queued else { throw Self.overloaded }
            session.respond(to: frame, with: Self.response(.commandDelivered))
            return
        }
        session.requestStarted(query: false)
        let table = server.pendingCommands
        let id = table.add(name: request.name, timeout: request.timeout, recipient: nil, on: caller.eventLoop) {
            result in
            caller.execute { $0.commandFinished(frame, result) }
        }
        let queued = handlers.submit(handler, for: command) { result in
            if !table.complete(id, from: nil, with: result.map { ByteBuffer(bytes: $0) }) {
                logger.debug("dropped the late reply of a server command", metadata: ["command": "\(command.name)"])
            }
        }
        if !queued { table.complete(id, from: nil, with: .failure(Self.overloaded)) }
    }

    private static let overloaded = ParleyError(
        code: .serverApplicationUnavailable, message: "the server application has too many commands waiting")

    static func response(_ disposition: Parley_V1_CommandDisposition) -> Parley_V1_CommandResponse {
        var response = Parley_V1_CommandResponse()
        response.disposition = disposition
        return response
    }
}

extension ServerConnectionHandler {
    /// A SEND_COMMAND of this connection that waited for a reply got it (or failed).
    func commandFinished(_ frame: Frame, _ result: Result<ByteBuffer, ParleyError>) {
        guard !machine.isClosing else { return }
        switch result {
        case .success(let payload):
            respond(to: frame, with: CommandsFamily.response(.commandReplied), payload: payload)
        case .failure(let error):
            respond(to: frame, with: error)
        }
        requestAnswered(query: false)
    }

    /// Takes `user`'s stored commands out of the store and pushes them, if this session is
    /// still `user`'s and takes commands (otherwise they stay stored).
    func pushStoredCommands(of user: UserID) {
        guard negotiatedCommands, machine.identity.user == user, let context else { return }
        let server = self.server
        server.blocking(on: context.eventLoop) { () throws(ParleyError) in
            try server.store.takeStoredCommands(for: user)
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            switch result {
            case .success(let commands):
                for command in commands {
                    var event = Parley_V1_CommandEvent()
                    event.sender = command.sender.rawValue
                    event.name = command.name
                    event.fireAndForget = true
                    event.sentAtMs = command.storedAt.millisecondsSince1970
                    write(
                        Frame(type: .command, requestID: 0, message: event, payload: ByteBuffer(bytes: command.payload))
                    )
                }
            case .failure(let error):
                logger.warning("cannot take the stored commands", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Pushes a COMMAND event to this session if it is still `recipient`'s; otherwise, or if
    /// the session does not speak commands, the command fails at once.
    func deliverCommand(_ event: Parley_V1_CommandEvent, payload: ByteBuffer, to recipient: UserID) {
        let failure: ParleyError
        if machine.identity.user != recipient || machine.isClosing || context == nil {
            failure = ParleyError(code: .recipientOffline, message: "user \(recipient) is not logged on")
        } else if !negotiatedCommands {
            failure = ParleyError(
                code: .noHandler, message: "user \(recipient)'s client does not take commands")
        } else {
            write(Frame(type: .command, requestID: 0, message: event, payload: payload))
            return
        }
        if event.commandID != 0 {
            server.pendingCommands.complete(event.commandID, from: sessionID, with: .failure(failure))
        }
    }
}
