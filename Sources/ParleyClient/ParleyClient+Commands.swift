import NIOCore
public import ParleyCore
import ParleyWire
import Synchronization

// Custom commands (docs/PROTOCOL.md section 24): sending them to the server application or to
// other users, and answering the ones sent to this user with handlers registered by name.
// Every received command also appears in `events` as ParleyClientEvent.command.

/// What became of a fire-and-forget command.
public enum CommandDelivery: Sendable, Hashable {
    /// Handed to the recipient's session (or the server application).
    case delivered
    /// The recipient was offline; the server keeps the command and delivers it at its next logon.
    case stored
}

extension ParleyClient {
    /// A command handler: gets the command, returns the reply's payload. Throw
    /// ``/ParleyCore/CommandFailure`` to fail the command with your own code and text.
    public typealias CommandHandler = @Sendable (Command) async throws -> [UInt8]

    /// Answers commands named `name` with `handler`, replacing the handler registered before.
    ///
    /// Handlers run in child tasks of ``run()``, one per command, never on an event loop. A
    /// command that wants a reply and has no handler is answered NO_HANDLER at once.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidRequest` for a name no command
    ///   can have.
    public func handleCommands(named name: String, _ handler: @escaping CommandHandler) throws(ParleyError) {
        try commands.register(name, handler)
    }

    /// Stops answering commands named `name`; later ones get NO_HANDLER.
    public func removeCommandHandler(named name: String) {
        commands.set(nil, for: name)
    }

    /// Sends command `name` to `recipient` (the server application by default) and waits for
    /// its reply.
    ///
    /// - Parameters:
    ///   - name: the command's name: 1 to 128 bytes of UTF-8, no control characters.
    ///   - payload: the command's data, opaque to the server.
    ///   - recipient: a user, or ``/ParleyCore/UserID/server`` for the server application.
    ///   - timeout: how long to wait for the reply (the server cuts it to 5 minutes).
    /// - Returns: the reply's payload.
    /// - Throws: ``/ParleyCore/ParleyError`` with code `noHandler` (the recipient has no handler
    ///   for `name`), `commandFailed` (the handler failed: ``/ParleyCore/ParleyError/applicationCode``
    ///   and the message are the application's), `recipientOffline`, `commandTimedOut`,
    ///   `invalidRequest` for a bad name, or a connection error.
    public func sendCommand(
        _ name: String,
        payload: [UInt8] = [],
        to recipient: UserID = .server,
        timeout: Duration = CommandTimeout.default
    ) async throws(ParleyError) -> [UInt8] {
        try Command.validate(name: name)
        let request = Parley_V1_CommandRequest(name: name, recipient: recipient, timeout: timeout, fireAndForget: false)
        let answer = try await commandRequest(request, payload: payload)
        return Array(answer.payload.readableBytesView)
    }

    /// Sends command `name` to `recipient` without waiting for a reply (fire-and-forget).
    ///
    /// - Parameters:
    ///   - name: the command's name.
    ///   - payload: the command's data, opaque to the server.
    ///   - recipient: a user, or ``/ParleyCore/UserID/server`` for the server application.
    ///   - storeIfOffline: when the recipient is offline, let the server keep the command and
    ///     deliver it at the recipient's next logon; without it an offline recipient fails the
    ///     command with `recipientOffline`.
    /// - Returns: whether the command was handed over or stored.
    @discardableResult
    public func fireCommand(
        _ name: String,
        payload: [UInt8] = [],
        to recipient: UserID = .server,
        storeIfOffline: Bool = false
    ) async throws(ParleyError) -> CommandDelivery {
        try Command.validate(name: name)
        let request = Parley_V1_CommandRequest(
            name: name, recipient: recipient, timeout: .zero, fireAndForget: true, storeIfOffline: storeIfOffline)
        let answer = try await commandRequest(request, payload: payload)
        let response = try answer.decodeMeta(as: Parley_V1_CommandResponse.self)
        return response.disposition == .commandStored ? .stored : .delivered
    }

    /// Sends a SEND_COMMAND and returns its answer frame.
    private func commandRequest(_ request: Parley_V1_CommandRequest, payload: [UInt8]) async throws(ParleyError)
        -> Frame
    {
        let connection = try await readyConnection(timeout: configuration.retry.requestTimeout)
        // The server's deadline answers first (COMMAND_TIMED_OUT); this one is for a lost server.
        let wait = (request.fireAndForget ? configuration.retry.requestTimeout : request.timeout) + .seconds(5)
        let answer: Frame
        do throws(ParleyError) {
            answer = try await connection.requestFrame(
                .sendCommand, request, payload: ByteBuffer(bytes: payload), timeout: wait)
        } catch  where error.code == .timedOut {
            throw ParleyError(code: .commandTimedOut, message: "no answer to command \"\(request.name)\" in time")
        }
        guard answer.type == FrameType.sendCommand.response else {
            throw ParleyError(code: .protocolViolation, message: "expected SEND_COMMAND_OK, got \(answer.type)")
        }
        return answer
    }

    /// A COMMAND event: run its handler (or answer NO_HANDLER) and show it in `events`.
    func receivedCommand(_ frame: Frame, from connection: ClientConnection) {
        guard let event: Parley_V1_CommandEvent = try? frame.decodeMeta() else {
            logger.debug("dropping a COMMAND event with an unreadable meta section")
            return
        }
        let command = event.command(payload: frame.payload)
        let handler = commands.handler(for: command.name) ?? fallbackCommands?.handler(for: command.name)
        let id = event.commandID
        let logger = self.logger
        if command.expectsReply {
            guard let handler else {
                connection.reply(
                    to: id,
                    .failure(ParleyError(code: .noHandler, message: "no handler for command \"\(command.name)\"")))
                emitCommand(command)
                return
            }
            let queued = commands.submit(handler, for: command) { connection.reply(to: id, $0) }
            if !queued {
                connection.reply(
                    to: id,
                    .failure(
                        ParleyError(
                            code: .commandFailed, message: "the client has too many commands waiting",
                            applicationCode: 0)
                    )
                )
            }
        } else if let handler {
            let queued = commands.submit(handler, for: command) { result in
                if case .failure(let error) = result {
                    logger.debug(
                        "a fire-and-forget command failed",
                        metadata: ["command": "\(command.name)", "error": "\(error)"])
                }
            }
            if !queued { logger.warning("dropped a fire-and-forget command: too many commands waiting") }
        }
        emitCommand(command)
    }

    /// At most this many `.command` events wait unread in ``events``; past that they are not
    /// shown (their handlers still run), so a client that never reads its events does not grow
    /// with every command another user sends it.
    static let unreadCommandEventLimit = 1024

    private func emitCommand(_ command: Command) {
        let (unread, _) = unreadCommandEvents.add(1, ordering: .relaxed)
        guard unread <= Self.unreadCommandEventLimit else {
            unreadCommandEvents.subtract(1, ordering: .relaxed)
            if unread == Self.unreadCommandEventLimit + 1 {
                logger.warning("not showing received commands in the events: too many unread")
            }
            return
        }
        emit(.command(command))
    }
}

extension ClientConnection {
    /// Sends the COMMAND_REPLY for command `id`, with request ID 0: nothing waits for its
    /// answer (a reply that comes too late gets an ERROR with request ID 0, which is logged).
    func reply(to id: UInt64, _ result: Result<[UInt8], ParleyError>) {
        let payload: ByteBuffer
        if case .success(let bytes) = result { payload = ByteBuffer(bytes: bytes) } else { payload = ByteBuffer() }
        let frame = Frame(
            type: .commandReply, requestID: 0, message: Parley_V1_CommandReply(commandID: id, result), payload: payload)
        channel.writeAndFlush(frame, promise: nil)
    }
}

/// The error that ends ``ParleyClient/run()``, kept while its command handlers finish.
final class RunFailure: Sendable {
    private let value = Mutex<ParleyError?>(nil)

    var error: ParleyError? { value.withLock { $0 } }

    func record(_ error: ParleyError) {
        value.withLock { $0 = error }
    }
}
