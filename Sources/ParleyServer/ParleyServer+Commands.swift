import Foundation
import NIOCore
public import ParleyCore
import ParleyLink
import ParleyWire

// The server application sending commands to users (docs/PROTOCOL.md section 24). Commands to
// the server are handled by `commands` (ServerCommands).

extension ParleyServer {
    /// Sends command `name` to `user`'s session and waits for the reply.
    ///
    /// The user's client answers with its handler for `name` (``/ParleyCore/Command/sender`` is
    /// ``/ParleyCore/UserID/server``).
    ///
    /// - Returns: the reply's payload.
    /// - Throws: ``/ParleyCore/ParleyError`` with code `recipientOffline` when the user is not
    ///   logged on (or logs off before replying), `noHandler` when its client has no handler
    ///   for `name`, `commandFailed` with the client's ``/ParleyCore/ParleyError/applicationCode``
    ///   when the handler failed, `commandTimedOut` after `timeout`, `invalidRequest` for a bad
    ///   name, `shuttingDown` when the server does not run.
    public func sendCommand(
        _ name: String,
        payload: [UInt8] = [],
        to user: UserID,
        timeout: Duration = CommandTimeout.default
    ) async throws(ParleyError) -> [UInt8] {
        let (context, target, event) = try prepareCommand(name, to: user, fireAndForget: false)
        let timeout = min(max(timeout, .milliseconds(1)), CommandTimeout.maximum)
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<ByteBuffer, ParleyError>, Never>) in
            var event = event
            event.timeoutMs = timeout.wireMilliseconds
            event.commandID = context.pendingCommands.add(
                name: name, timeout: timeout, recipient: target.id, on: target.eventLoop
            ) { result in
                continuation.resume(returning: result)
            }
            let ready = event
            target.execute { $0.deliverCommand(ready, payload: ByteBuffer(bytes: payload), to: user) }
        }
        return Array(try result.get().readableBytesView)
    }

    /// Sends command `name` to `user`'s session without waiting for a reply (fire-and-forget).
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `recipientOffline` when the user is not
    ///   logged on, `invalidRequest` for a bad name, `shuttingDown` when the server does not run.
    public func fireCommand(_ name: String, payload: [UInt8] = [], to user: UserID) throws(ParleyError) {
        let (_, target, event) = try prepareCommand(name, to: user, fireAndForget: true)
        target.execute { $0.deliverCommand(event, payload: ByteBuffer(bytes: payload), to: user) }
    }

    /// Sends command `name` without waiting for replies to each of `users` who is logged on: to
    /// several users at once (a bot's notice, say).
    ///
    /// - Returns: the users it was handed to, in the order given; offline users are left out.
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidRequest` for a bad name,
    ///   `shuttingDown` when the server does not run.
    @discardableResult
    public func fireCommand(_ name: String, payload: [UInt8] = [], to users: [UserID]) throws(ParleyError)
        -> [UserID]
    {
        try Command.validate(name: name)
        guard runningContext != nil else {
            throw ParleyError(code: .shuttingDown, message: "the server is not running")
        }
        var reached: [UserID] = []
        var seen = Set<UserID>()
        for user in users where user != .server && seen.insert(user).inserted {
            do throws(ParleyError) {
                try fireCommand(name, payload: payload, to: user)
                reached.append(user)
            } catch  where error.code == .recipientOffline {
                continue
            }
        }
        return reached
    }

    /// Sends command `name`, fire-and-forget, to every user logged on now.
    ///
    /// - Returns: the users it was handed to, by user ID.
    @discardableResult
    public func broadcastCommand(_ name: String, payload: [UInt8] = []) throws(ParleyError) -> [UserID] {
        guard let context = runningContext else {
            throw ParleyError(code: .shuttingDown, message: "the server is not running")
        }
        return try fireCommand(name, payload: payload, to: context.registry.onlineUsers.sorted())
    }

    private func prepareCommand(
        _ name: String,
        to user: UserID,
        fireAndForget: Bool
    ) throws(ParleyError) -> (ServerContext, SessionHandle, Parley_V1_CommandEvent) {
        try Command.validate(name: name)
        guard let context = runningContext else {
            throw ParleyError(code: .shuttingDown, message: "the server is not running")
        }
        guard let target = context.registry.session(for: user) else {
            throw ParleyError(code: .recipientOffline, message: "user \(user) is not logged on")
        }
        var event = Parley_V1_CommandEvent()
        event.sender = UserID.server.rawValue
        event.name = name
        event.fireAndForget = fireAndForget
        event.sentAtMs = Date().millisecondsSince1970
        return (context, target, event)
    }
}
