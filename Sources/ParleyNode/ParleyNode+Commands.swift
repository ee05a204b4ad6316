import NIOCore
import ParleyClient
public import ParleyCore
import ParleyWire

// Custom commands on a node (docs/PROTOCOL.md sections 24 and 24.6): handlers by name answer
// commands from peer nodes (PEER_COMMAND over direct links) and from the server (COMMAND
// events of the node's client); sending goes over the direct link when one to the recipient's
// node is up or can be dialled, through the server otherwise. Commands never wait in the outbox.

extension ParleyNode {
    /// A command handler: gets the command, returns the reply's payload. Throw
    /// ``/ParleyCore/CommandFailure`` to fail the command with your own code and text.
    public typealias CommandHandler = @Sendable (Command) async throws -> [UInt8]

    /// The reply to ``sendCommand(_:payload:to:timeout:)`` and the route the command took.
    public struct CommandResult: Sendable, Hashable {
        /// The reply's payload.
        public var reply: [UInt8]
        /// ``Route/direct`` or ``Route/server``.
        public var route: Route
    }

    /// Answers commands named `name`, from peer nodes and through the server, with `handler`
    /// (replacing the one registered before). Handlers run in child tasks of ``run()``.
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

    /// Sends command `name` to `recipient` and waits for its reply: over a direct link to the
    /// recipient's node when there is one (or it can be dialled), which works with the server
    /// down; through the server otherwise (users only).
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `noHandler`, `commandFailed` (with
    ///   ``/ParleyCore/ParleyError/applicationCode``), `recipientOffline`, `commandTimedOut`,
    ///   `notConnected` when neither route exists, `invalidRequest` for a bad name.
    public func sendCommand(
        _ name: String,
        payload: [UInt8] = [],
        to recipient: Recipient,
        timeout: Duration = CommandTimeout.default
    ) async throws(ParleyError) -> CommandResult {
        try Command.validate(name: name)
        let timeout = min(max(timeout, .milliseconds(1)), CommandTimeout.maximum)
        var meta = Parley_V1_CommandRequest(name: name, recipient: .server, timeout: timeout, fireAndForget: false)
        if let answer = try await sendDirect(&meta, payload: payload, to: recipient, timeout: timeout) {
            return CommandResult(reply: Array(answer.payload.readableBytesView), route: .direct)
        }
        let (client, user) = try serverRoute(to: recipient, name: name)
        return CommandResult(
            reply: try await client.sendCommand(name, payload: payload, to: user, timeout: timeout), route: .server)
    }

    /// Sends command `name` to `recipient` without waiting for a reply (fire-and-forget), over a
    /// direct link or through the server, like ``sendCommand(_:payload:to:timeout:)``.
    ///
    /// - Returns: the route the command took.
    @discardableResult
    public func fireCommand(_ name: String, payload: [UInt8] = [], to recipient: Recipient) async throws(ParleyError)
        -> Route
    {
        try Command.validate(name: name)
        var meta = Parley_V1_CommandRequest(name: name, recipient: .server, timeout: .zero, fireAndForget: true)
        if try await sendDirect(&meta, payload: payload, to: recipient, timeout: configuration.peerTimeout) != nil {
            return .direct
        }
        let (client, user) = try serverRoute(to: recipient, name: name)
        try await client.fireCommand(name, payload: payload, to: user)
        return .server
    }

    /// Sends a PEER_COMMAND over a direct link to `recipient`'s node, if there is one.
    ///
    /// - Returns: the answer, or nil when no direct link exists or it failed before the peer
    ///   could answer (the caller then tries the server).
    private func sendDirect(
        _ meta: inout Parley_V1_CommandRequest,
        payload: [UInt8],
        to recipient: Recipient,
        timeout: Duration
    ) async throws(ParleyError) -> Frame? {
        guard let target = await directTarget(for: recipient) else { return nil }
        if case .user(let user) = recipient { meta.recipient = user.rawValue }
        let directLink: DirectLink
        do {
            let purpose: DialPurpose =
                state.withLock { $0.server.loggedOn } ? .sendWithAlternative : .sendWithoutAlternative
            directLink = try await link(to: target.node, addresses: target.addresses, purpose: purpose)
        } catch {
            logger.debug("no direct link for a command", metadata: ["node.id": "\(target.node)", "error": "\(error)"])
            return nil
        }
        if case .user(let user) = recipient, directLink.hello?.userID != user { return nil }
        do throws(ParleyError) {
            return try await directLink.request(.peerCommand, meta, payload: payload, timeout: timeout)
        } catch {
            switch error.code {
            case .timedOut:
                throw ParleyError(
                    code: .commandTimedOut, message: "no reply to command \"\(meta.name)\" within \(timeout)")
            case .notConnected:
                // The link broke before the answer: the handler may have run; the server route
                // is only tried for fire-and-forget commands, whose handlers must cope anyway.
                guard meta.fireAndForget else { throw error }
                return nil
            default:
                throw error
            }
        }
    }

    /// The node's client when it is logged on, and the user a command through it goes to.
    private func serverRoute(to recipient: Recipient, name: String) throws(ParleyError) -> (ParleyClient, UserID) {
        guard case .user(let user) = recipient else {
            throw ParleyError(code: .notConnected, message: "no direct link to the node for command \"\(name)\"")
        }
        guard let client = state.withLock({ $0.server.loggedOnClient }) else {
            throw ParleyError(
                code: .notConnected,
                message: "no direct link to user \(user)'s node and no server for command \"\(name)\"")
        }
        return (client, user)
    }

    /// A PEER_COMMAND from a peer: runs the handler in ``run()`` and answers when it is done
    /// (a fire-and-forget command at once).
    func handleCommand(_ frame: Frame, on link: DirectLink) {
        guard let hello = link.hello else {
            link.write(
                .error(ParleyError(code: .handshakeRequired, message: "NODE_HELLO first"), requestID: frame.requestID))
            return
        }
        let request: Parley_V1_CommandRequest
        do throws(ParleyError) {
            request = try frame.decodeMeta()
            try request.validate()
        } catch {
            link.write(.error(error, requestID: frame.requestID))
            return
        }
        let command = Command(
            name: request.name,
            payload: Array(frame.payload.readableBytesView),
            sender: hello.userID ?? .server,
            expectsReply: !request.fireAndForget
        )
        eventQueue.offer(.commandReceived(command, from: hello.nodeID, route: .direct))
        let requestID = frame.requestID
        let handler = commands.handler(for: command.name)
        if request.fireAndForget {
            link.write(Self.commandAnswer(requestID, .success([]), disposition: .commandDelivered))
            guard let handler else { return }
            let logger = self.logger
            _ = commands.submit(handler, for: command) { result in
                if case .failure(let error) = result {
                    logger.debug("a fire-and-forget command failed", metadata: ["error": "\(error)"])
                }
            }
            return
        }
        guard let handler else {
            link.write(
                .error(
                    ParleyError(code: .noHandler, message: "no handler for command \"\(command.name)\""),
                    requestID: requestID))
            return
        }
        let queued = commands.submit(handler, for: command) { result in
            link.write(Self.commandAnswer(requestID, result, disposition: .commandReplied))
        }
        if !queued {
            link.write(
                .error(
                    ParleyError(
                        code: .commandFailed, message: "the node has too many commands waiting", applicationCode: 0),
                    requestID: requestID))
        }
    }

    /// PEER_COMMAND_OK with the reply, or the ERROR the handler's failure becomes.
    private static func commandAnswer(
        _ requestID: UInt32,
        _ result: Result<[UInt8], ParleyError>,
        disposition: Parley_V1_CommandDisposition
    ) -> Frame {
        switch result {
        case .success(let reply):
            var response = Parley_V1_CommandResponse()
            response.disposition = disposition
            return Frame(
                type: FrameType.peerCommand.response, requestID: requestID, message: response,
                payload: ByteBuffer(bytes: reply))
        case .failure(let error):
            return .error(error, requestID: requestID)
        }
    }
}
