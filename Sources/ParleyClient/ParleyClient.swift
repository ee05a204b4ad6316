public import Foundation
public import Logging
import NIOCore
import NIOPosix
public import ParleyCore
import ParleyWire
public import ServiceLifecycle
import Synchronization

/// A session with a central Parley server.
///
/// The client works while ``run()`` runs: `run()` connects (retrying per the configuration's
/// ``RetryPolicy``), greets the server, and after a lost connection reconnects with back-off,
/// logs on again with the last credentials and resends messages whose answer was still
/// pending. Requests made meanwhile wait for the connection, within the request timeout.
/// ``withParleyClient(configuration:logger:isolation:_:)`` runs a client for the length of a closure:
///
/// ```swift
/// try await withParleyClient(configuration: .init(server: "127.0.0.1:7420")) { client in
///     try await client.logOn(userID: 1000, password: "secret")
///     let results = try await client.send(.text("hello"), to: [1001])
///     for await event in client.events { ... }
/// }
/// ```
public final class ParleyClient: Sendable {
    public let configuration: Configuration
    let logger: Logger
    private let state = Mutex(State())
    private let eventStream: AsyncStream<ParleyClientEvent>
    private let eventContinuation: AsyncStream<ParleyClientEvent>.Continuation
    private let group: any EventLoopGroup
    /// Command handlers by name, and the handler runs waiting for ``run()``.
    let commands = CommandHandlers(capacity: 256)
    /// Handlers asked when ``commands`` has none for a name.
    let fallbackCommands: CommandHandlers?
    /// `.command` events in ``events`` not taken yet (bounded by `unreadCommandEventLimit`).
    let unreadCommandEvents = Atomic<Int>(0)

    private struct State {
        enum Phase {
            case idle
            case connecting
            case ready(ClientConnection)
            case stopped(ParleyError?)
        }

        var phase = Phase.idle
        /// The connection the last MESSAGE came from: a message the application takes while a
        /// new session is still logging on (its stored messages come right behind the logon
        /// answer) is acknowledged there, not dropped until the next session.
        var eventConnection: ClientConnection?
        var waiters: [UUID: CheckedContinuation<ClientConnection, any Error>] = [:]
        /// The last successful logon, replayed after a reconnect.
        var credentials: (user: UserID, password: String)?
        /// The resumption token of the last logon (docs/PROTOCOL.md section 9.2.1), presented
        /// instead of the password after a reconnect. Kept in memory only.
        var resumptionToken: ResumptionToken?
        var user: UserID?
        var stopRequested = false
        var seen = RecentMessages(capacity: 10_000)
        /// The user whose messages `seen` remembers.
        var seenUser: UserID?
        var hiddenRedeliveries = 0
        /// The application acknowledges messages itself (``manuallyAcknowledgedEvents``) and
        /// de-duplicates them durably: every copy is passed on, none acknowledged here.
        var acknowledgesManually = false

        /// Starts a fresh memory of received messages unless it already is `user`'s (nil: a user
        /// about to be registered). Message IDs are unique per sender, not per recipient: another
        /// user's copy of the same message is no duplicate.
        mutating func rememberMessages(for user: UserID?) {
            guard user == nil || user != seenUser else { return }
            seen = RecentMessages(capacity: seen.capacity)
            seenUser = user
        }
    }

    public convenience init(configuration: Configuration, logger: Logger = Logger(label: "parley.client")) {
        self.init(configuration: configuration, logger: logger, commandHandlers: nil)
    }

    /// A client whose commands without a handler of its own are answered by `commandHandlers`'
    /// (an embedding SDK's, kept across the clients it makes).
    package init(configuration: Configuration, logger: Logger, commandHandlers: CommandHandlers?) {
        self.fallbackCommands = commandHandlers
        self.configuration = configuration
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup.singleton
        (eventStream, eventContinuation) = AsyncStream.makeStream()
        state.withLock { $0.seen = RecentMessages(capacity: configuration.deduplicationCapacity) }
    }

    /// Messages, receipts and connection changes, in order. Iterate from one task.
    public var events: ParleyClientEvents {
        ParleyClientEvents(stream: eventStream, client: self)
    }

    /// The same events as ``events`` (iterate one of the two), but a message is not acknowledged
    /// when it is taken: call ``acknowledge(_:)`` once it is stored durably, so that a crash in
    /// between leaves it with the server. An embedding SDK with its own durable inbox uses this.
    /// Every copy of a message the server delivers again is passed on too (the application
    /// acknowledges what it has already), since the client cannot know whether the first copy was
    /// stored.
    public var manuallyAcknowledgedEvents: ParleyClientEvents {
        state.withLock { $0.acknowledgesManually = true }
        return ParleyClientEvents(stream: eventStream, client: self, acknowledgesMessages: false)
    }

    /// The user this client is logged on as, if any.
    public var loggedOnUser: UserID? { state.withLock { $0.user } }

    /// How many messages came again from the server after the application had taken them from
    /// ``events``: the client acknowledged each again and did not deliver it a second time.
    ///
    /// A server that crashes after the acknowledgement arrived but before it was committed sends
    /// such messages again at the next logon (docs/PROTOCOL.md section 11.6). Copies of a message
    /// still waiting in ``events`` are dropped too but not counted here.
    public var hiddenRedeliveries: Int { state.withLock { $0.hiddenRedeliveries } }

    // MARK: Running

    /// Connects and keeps the connection until ``shutdown()``, task cancellation or, run as a
    /// swift-service-lifecycle `Service` in a `ServiceGroup`, graceful shutdown (which logs off
    /// first, as ``shutdownGracefully(timeout:)`` does).
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` when the first connection fails after every attempt.
    public func run() async throws(ParleyError) {
        let start = state.withLock { state -> Bool in
            guard case .idle = state.phase, !state.stopRequested else { return false }
            state.phase = .connecting
            return true
        }
        guard start else {
            throw ParleyError(code: .internalError, message: "run() was called twice or after shutdown()")
        }
        let failure = RunFailure()
        // In a ServiceGroup, graceful shutdown logs off first, like shutdownGracefully().
        await withGracefulShutdownHandler {
            // Command handlers run as child tasks here, never on an event loop.
            await withDiscardingTaskGroup { group in
                group.addTask {
                    do throws(ParleyError) {
                        try await self.maintainConnection()
                    } catch {
                        failure.record(error)
                    }
                    self.commands.finish()
                }
                await commands.runJobs()
            }
        } onGracefulShutdown: {
            Task { await self.shutdownGracefully() }
        }
        if let error = failure.error { throw error }
    }

    /// Connects, and reconnects after a lost connection, until ``shutdown()`` or cancellation.
    private func maintainConnection() async throws(ParleyError) {
        var failures = 0
        var everConnected = false
        var finalError: ParleyError?
        while !Task.isCancelled, !state.withLock({ $0.stopRequested }) {
            emit(.connectionStateChanged(.connecting))
            do {
                let connection = try await connect()
                everConnected = true
                failures = 0
                let reason = await withTaskCancellationHandler {
                    await connection.waitUntilClosed()
                } onCancel: {
                    connection.close()
                }
                state.withLock { state in
                    if case .ready = state.phase { state.phase = .connecting }
                    state.user = nil
                }
                logger.debug(
                    "disconnected", metadata: ["reason": "\(reason.map(String.init(describing:)) ?? "closed")"])
                emit(.connectionStateChanged(.disconnected(reason)))
                // Replaced by another logon, or kicked by an admin: coming back by itself would
                // only fight the other session or the admin.
                if reason?.code == .sessionReplaced || reason?.code == .kicked || !configuration.reconnects {
                    finalError = reason
                    break
                }
            } catch {
                failures += 1
                logger.debug("connecting failed", metadata: ["error": "\(error)", "failures": "\(failures)"])
                // A certificate that is not trusted will not become trusted by trying again.
                if error.code == .serverNotTrusted
                    || (!everConnected && failures >= configuration.retry.connectAttempts)
                {
                    finalError = error
                    break
                }
            }
            if state.withLock({ $0.stopRequested }) { break }
            do {
                try await Task.sleep(for: configuration.retry.delay(afterFailures: max(failures, 1)))
            } catch {
                break
            }
        }
        stop(finalError)
        if let finalError, !everConnected { throw finalError }
    }

    /// Logs off first if logged on (waiting at most `timeout` for the answer), then shuts down.
    ///
    /// Logging off lets the server end the session before the socket closes, so the same user
    /// can log on again from another client at once instead of getting SESSION_EXISTS until the
    /// server has noticed the closed connection.
    public func shutdownGracefully(timeout: Duration = .seconds(1)) async {
        let connection = state.withLock { state -> ClientConnection? in
            guard state.user != nil, case .ready(let connection) = state.phase else { return nil }
            return connection
        }
        if let connection {
            do {
                let _: Parley_V1_Empty = try await connection.request(.logOff, Parley_V1_Empty(), timeout: timeout)
                state.withLock { $0.user = nil }
            } catch {
                logger.debug("logging off before shutting down failed", metadata: ["error": "\(error)"])
            }
        }
        shutdown()
    }

    /// Closes the connection and makes ``run()`` return.
    public func shutdown() {
        let connection = state.withLock { state -> ClientConnection? in
            state.stopRequested = true
            if case .ready(let connection) = state.phase { return connection }
            return nil
        }
        connection?.close()
        // Wake requests waiting for a connection; run() finishes the rest.
        failWaiters(ParleyError(code: .cancelled, message: "the client was shut down"))
    }

    private func stop(_ error: ParleyError?) {
        let waiters = state.withLock { state in
            state.phase = .stopped(error)
            state.user = nil
            defer { state.waiters = [:] }
            return state.waiters
        }
        let failure = error ?? ParleyError(code: .cancelled, message: "the client was shut down")
        for waiter in waiters.values { waiter.resume(throwing: failure) }
        emit(.connectionStateChanged(.stopped))
        eventContinuation.finish()
    }

    private func failWaiters(_ error: ParleyError) {
        let waiters = state.withLock { state in
            defer { state.waiters = [:] }
            return state.waiters
        }
        for waiter in waiters.values { waiter.resume(throwing: error) }
    }

    private func connect() async throws(ParleyError) -> ClientConnection {
        let connection: ClientConnection
        do {
            connection = try await ClientConnection.connect(
                host: configuration.host,
                port: configuration.port,
                configuration: configuration,
                group: group
            ) { [weak self] frame, connection in
                self?.handleEvent(frame, from: connection)
            }
        } catch let error as ParleyError {
            throw error
        } catch {
            throw ParleyError(
                code: .notConnected,
                message: "cannot connect to \(configuration.host):\(configuration.port)",
                cause: error
            )
        }
        do throws(ParleyError) {
            var hello = Parley_V1_Hello()
            hello.magic = WireProtocol.magic
            hello.minVersion = WireProtocol.version
            hello.maxVersion = WireProtocol.version
            hello.agent = configuration.agent
            hello.capabilities = [
                WireProtocol.presenceCapability, WireProtocol.commandsCapability, WireProtocol.filesCapability,
                WireProtocol.historyCapability,
            ]
            let ok: Parley_V1_HelloOk = try await connection.request(
                .hello,
                hello,
                timeout: configuration.retry.requestTimeout
            )
            connection.serverInfo.withLock { $0 = ok }
            if let firstUse = try connection.establish() {
                logger.info(
                    "trusting the server's certificate on first use",
                    metadata: ["server": "\(configuration.host):\(configuration.port)", "fingerprint": "\(firstUse)"]
                )
            }
            logger.debug("connected", metadata: ["server": "\(configuration.host):\(configuration.port)"])
            emit(.connectionStateChanged(.connected))
            if let credentials = state.withLock({ $0.credentials }) {
                do {
                    let response = try await logOnAgain(on: connection, credentials)
                    state.withLock { state in
                        state.user = UserID(response.user.userID)
                        state.resumptionToken = ResumptionToken(response)
                    }
                    emit(.connectionStateChanged(.loggedOn(credentials.user)))
                } catch {
                    logger.debug("logging on again after reconnecting failed", metadata: ["error": "\(error)"])
                    switch error.code {
                    case .sessionExists, .tooManyAttempts, .timedOut, .notConnected, .storageError, .internalError:
                        // The server may not have noticed the old connection died yet, or is
                        // briefly unable to answer: reconnect with back-off and try again.
                        throw error
                    default:
                        // The password is no longer right (changed elsewhere): stay a guest.
                        state.withLock { $0.credentials = nil }
                    }
                }
            }
        } catch {
            connection.close()
            throw error
        }
        let (waiters, stopped) = state.withLock { state in
            defer { state.waiters = [:] }
            if state.stopRequested { return (state.waiters, true) }
            state.phase = .ready(connection)
            return (state.waiters, false)
        }
        if stopped {
            connection.close()
            throw ParleyError(code: .cancelled, message: "the client was shut down")
        }
        for waiter in waiters.values { waiter.resume(returning: connection) }
        return connection
    }

    /// The current connection, waiting for one (within `timeout`) while reconnecting.
    func readyConnection(timeout: Duration) async throws(ParleyError) -> ClientConnection {
        // The common case, without the cost of a task group.
        let current = state.withLock { state -> ClientConnection? in
            if case .ready(let connection) = state.phase, !connection.isClosed { return connection }
            return nil
        }
        if let current { return current }
        let id = UUID()
        do {
            return try await withThrowingTaskGroup(of: ClientConnection.self) { group in
                group.addTask {
                    try await withTaskCancellationHandler {
                        try await withCheckedThrowingContinuation { continuation in
                            let immediate = self.state.withLock { state -> Result<ClientConnection, ParleyError>? in
                                switch state.phase {
                                case .ready(let connection) where !connection.isClosed:
                                    return .success(connection)
                                case .ready:
                                    // Closed, and run() has not noticed yet: wait for the next one.
                                    state.waiters[id] = continuation
                                    return nil
                                case .stopped(let error):
                                    return .failure(
                                        error ?? ParleyError(code: .cancelled, message: "the client is not running")
                                    )
                                case .idle, .connecting:
                                    if state.stopRequested {
                                        return .failure(
                                            ParleyError(code: .cancelled, message: "the client was shut down"))
                                    }
                                    state.waiters[id] = continuation
                                    return nil
                                }
                            }
                            if let immediate { continuation.resume(with: immediate.mapError { $0 as any Error }) }
                        }
                    } onCancel: {
                        let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                        waiter?.resume(throwing: CancellationError())
                    }
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    throw ParleyError(code: .notConnected, message: "no connection to the server within \(timeout)")
                }
                defer { group.cancelAll() }
                guard let connection = try await group.next() else {
                    throw ParleyError(code: .notConnected, message: "no connection to the server")
                }
                return connection
            }
        } catch let error as ParleyError {
            throw error
        } catch {
            throw ParleyError(code: .cancelled, message: "waiting for the connection was cancelled", cause: error)
        }
    }

    func request<M: WireMessage>(
        _ type: FrameType,
        _ meta: some WireMessage,
        payload: ByteBuffer = ByteBuffer(),
        as: M.Type = M.self
    ) async throws(ParleyError) -> M {
        let timeout = configuration.retry.requestTimeout
        let connection = try await readyConnection(timeout: timeout)
        return try await connection.request(type, meta, payload: payload, timeout: timeout)
    }

    // MARK: Events

    func emit(_ event: ParleyClientEvent) {
        eventContinuation.yield(event)
    }

    private func handleEvent(_ frame: Frame, from connection: ClientConnection) {
        switch frame.type {
        case .message:
            guard let event: Parley_V1_MessageEvent = try? frame.decodeMeta() else {
                logger.debug("dropping a MESSAGE event with an unreadable meta section")
                return
            }
            let body = MessageBody(isText: event.kind != .binary, bytes: Array(frame.payload.readableBytesView))
            let message = Message(
                id: MessageID(event.messageID),
                sender: UserID(event.sender),
                recipients: event.recipients.map(UserID.init(rawValue:)),
                body: body,
                sentAt: Date(millisecondsSince1970: event.sentAtMs),
                deliveredAt: Date(millisecondsSince1970: event.deliveredAtMs)
            )
            let arrival = state.withLock { state -> RecentMessages.Arrival in
                state.eventConnection = connection
                // An application that acknowledges itself gets every copy (it de-duplicates
                // durably, and only it knows whether the first copy was recorded).
                if state.acknowledgesManually { return .new }
                let arrival = state.seen.arrived(sender: message.sender, id: message.id)
                if arrival == .taken { state.hiddenRedeliveries += 1 }
                return arrival
            }
            switch arrival {
            case .new:
                emit(.message(message))
            case .waiting:
                // The first copy still waits in `events`: it is acknowledged when the application
                // takes it, not now, so a crash of this process cannot lose it.
                break
            case .taken:
                // The application has it, but the server did not record the acknowledgement
                // (it crashed before committing it): confirm it again, deliver it not again.
                connection.acknowledge(message)
            }
        case .deliveryReceipt:
            guard let event: Parley_V1_DeliveryReceiptEvent = try? frame.decodeMeta() else { return }
            emit(
                .deliveryReceipt(
                    DeliveryReceipt(
                        messageID: MessageID(event.messageID),
                        recipient: UserID(event.recipient),
                        acknowledgedAt: Date(millisecondsSince1970: event.acknowledgedAtMs)
                    )
                )
            )
        case .serverShutdown:
            let event = (try? frame.decodeMeta(as: Parley_V1_ServerShutdownEvent.self)) ?? .init()
            emit(.serverShuttingDown(reason: event.reason))
        case .presence:
            guard let event: Parley_V1_PresenceEvent = try? frame.decodeMeta() else {
                logger.debug("dropping a PRESENCE event with an unreadable meta section")
                return
            }
            var presences: [UserID: Presence] = [:]
            for info in event.presences {
                if let presence = info.presence { presences[UserID(info.userID)] = presence }
            }
            let contacts = event.snapshot ? event.contacts.contacts.compactMap(\.contact) : nil
            emit(.presence(PresenceUpdate(isSnapshot: event.snapshot, contacts: contacts, presences: presences)))
        case .command:
            receivedCommand(frame, from: connection)
        case .transferOffer, .transferStatus:
            receivedTransferEvent(frame)
        case .sessionReplaced:
            let event = (try? frame.decodeMeta(as: Parley_V1_SessionReplacedEvent.self)) ?? .init()
            state.withLock { $0.credentials = nil }
            emit(.sessionReplaced(reason: event.reason))
        case .error:
            logger.debug("the server reported an error", metadata: ["error": "\(ParleyError(errorFrame: frame))"])
        default:
            logger.debug("ignoring an unexpected frame", metadata: ["frame.type": "\(frame.type)"])
        }
    }

    /// Acknowledges a message to the server, which then stops redelivering it: the events
    /// iterator calls it when the application takes a message; with
    /// ``manuallyAcknowledgedEvents`` the application calls it. Without a connection, the server
    /// redelivers the message after the next logon (and the client acknowledges the copy).
    public func acknowledge(_ message: Message) {
        let connection = state.withLock { state -> ClientConnection? in
            state.seen.take(sender: message.sender, id: message.id)
            switch state.phase {
            case .ready(let connection): return connection
            case .connecting: return state.eventConnection
            case .idle, .stopped: return nil
            }
        }
        // Without a connection the server keeps the message and redelivers it after the
        // next logon, where the de-duplication above drops it.
        connection?.acknowledge(message)
    }
}

// MARK: - Requests

extension ParleyClient {
    public struct LogonResult: Sendable, Hashable {
        public var user: UserInfo
        /// How many stored messages follow as events.
        public var storedMessages: Int
    }

    /// The automatic logon after a reconnect: with the resumption token if there is one, then,
    /// if the server refuses it, with the password.
    private func logOnAgain(
        on connection: ClientConnection,
        _ credentials: (user: UserID, password: String)
    ) async throws(ParleyError) -> Parley_V1_LogonResponse {
        // Taken out whatever happens: the server deletes a token once it is presented.
        let token = state.withLock { state in
            defer { state.resumptionToken = nil }
            return state.resumptionToken
        }
        if let token, token.expiresAt > Date() {
            var request = logonRequest(credentials.user, "")
            request.resumptionToken = token.text
            do {
                return try await connection.request(.logOn, request, timeout: configuration.retry.requestTimeout)
            } catch {
                guard error.code == .invalidCredentials else { throw error }
                logger.debug("the server refused the resumption token; logging on with the password")
            }
        }
        return try await connection.request(
            .logOn,
            logonRequest(credentials.user, credentials.password),
            timeout: configuration.retry.requestTimeout
        )
    }

    /// A LOGON request, with ``Configuration/node`` if set: every logon, the automatic one after
    /// a reconnect too, declares the node again.
    private func logonRequest(_ user: UserID, _ password: String) -> Parley_V1_LogonRequest {
        var request = Parley_V1_LogonRequest()
        request.userID = user.rawValue
        request.password = password
        if let node = configuration.node { request.declare(node) }
        return request
    }

    /// Registers a new user and logs this client on as that user.
    ///
    /// - Parameters:
    ///   - info: the user's details; `userName` is required, `userID` is ignored.
    ///   - password: the new user's password, for later logons.
    ///   - requestedUserID: a specific free ID, or nil to let the server assign the next one.
    ///     ``/ParleyCore/UserID/server`` is never granted (on the wire, 0 means "assign one").
    @discardableResult
    public func register(_ info: UserInfo, password: String, requestedUserID: UserID? = nil) async throws(ParleyError)
        -> UserInfo
    {
        if requestedUserID == .server {
            throw ParleyError(code: .invalidUserID, message: "user ID \(UserID.server) is the server's address")
        }
        var request = Parley_V1_RegisterRequest()
        request.info = Parley_V1_UserInfo(info)
        request.password = password
        request.requestedUserID = requestedUserID?.rawValue ?? 0
        if let node = configuration.node { request.declare(node) }
        // Before the request: the new user's messages may arrive right behind the answer.
        state.withLock { $0.rememberMessages(for: nil) }
        let response: Parley_V1_LogonResponse = try await self.request(.register, request)
        let user = response.user.userInfo
        state.withLock { state in
            state.credentials = (user.userID, password)
            state.resumptionToken = ResumptionToken(response)
            state.user = user.userID
            state.seenUser = user.userID
        }
        emit(.connectionStateChanged(.loggedOn(user.userID)))
        return user
    }

    /// Logs on; stored messages for the user follow as ``ParleyClientEvent/message(_:)`` events.
    @discardableResult
    public func logOn(userID: UserID, password: String) async throws(ParleyError) -> LogonResult {
        // Before the request: the user's stored messages may arrive right behind the answer.
        state.withLock { $0.rememberMessages(for: userID) }
        let response: Parley_V1_LogonResponse = try await request(.logOn, logonRequest(userID, password))
        state.withLock { state in
            state.credentials = (userID, password)
            state.resumptionToken = ResumptionToken(response)
            state.user = userID
        }
        emit(.connectionStateChanged(.loggedOn(userID)))
        return LogonResult(user: response.user.userInfo, storedMessages: Int(response.storedMessages))
    }

    /// Logs off; the connection stays open as a guest.
    public func logOff() async throws(ParleyError) {
        let _: Parley_V1_Empty = try await request(.logOff, Parley_V1_Empty())
        state.withLock { state in
            state.credentials = nil
            state.resumptionToken = nil
            state.user = nil
        }
        emit(.connectionStateChanged(.connected))
    }

    public func userExists(_ user: UserID) async throws(ParleyError) -> Bool {
        var request = Parley_V1_UserIdRequest()
        request.userID = user.rawValue
        let response: Parley_V1_BoolResponse = try await self.request(.userExists, request)
        return response.value
    }

    /// Whether `user` is logged on right now. Throws `userNotFound` for unknown users.
    public func isOnline(_ user: UserID) async throws(ParleyError) -> Bool {
        var request = Parley_V1_UserIdRequest()
        request.userID = user.rawValue
        let response: Parley_V1_BoolResponse = try await self.request(.userOnline, request)
        return response.value
    }

    public func userInfo(_ user: UserID) async throws(ParleyError) -> UserInfo {
        var request = Parley_V1_UserIdRequest()
        request.userID = user.rawValue
        let response: Parley_V1_UserInfoResponse = try await self.request(.getUserInfo, request)
        return response.user.userInfo
    }

    /// IDs of the users with this user name (case-insensitive), ascending.
    public func findUserIDs(named name: String) async throws(ParleyError) -> [UserID] {
        var request = Parley_V1_FindUserIdRequest()
        request.userName = name
        let response: Parley_V1_FindUserIdResponse = try await self.request(.findUserID, request)
        return response.userIds.map(UserID.init(rawValue:))
    }

    public func findUsers(_ query: UserQuery) async throws(ParleyError) -> UserSearchResult {
        let response: Parley_V1_FindUsersResponse = try await request(.findUsers, Parley_V1_FindUsersRequest(query))
        return UserSearchResult(users: response.users.map(\.userInfo), truncated: response.truncated)
    }

    /// Replaces the logged-on user's details (not the ID); returns what the server stored.
    public func updateUserInfo(_ info: UserInfo) async throws(ParleyError) -> UserInfo {
        var request = Parley_V1_UpdateUserInfoRequest()
        request.info = Parley_V1_UserInfo(info)
        let response: Parley_V1_UserInfoResponse = try await self.request(.updateUserInfo, request)
        return response.user.userInfo
    }

    public func changePassword(from old: String, to new: String) async throws(ParleyError) {
        var request = Parley_V1_ChangePasswordRequest()
        request.oldPassword = old
        request.newPassword = new
        let _: Parley_V1_Empty = try await self.request(.changePassword, request)
        state.withLock { state in
            if let user = state.credentials?.user { state.credentials = (user, new) }
            // The server revoked it with the old password.
            state.resumptionToken = nil
        }
    }

    /// Sends a message and returns one result per distinct recipient, in order.
    ///
    /// The server answers once the message is stored durably. If the connection drops before
    /// the answer, the client resends the message (same ID, so never delivered twice) after it
    /// reconnects and logs on again, until the request timeout runs out.
    public func send(
        _ body: MessageBody,
        to recipients: [UserID],
        id: MessageID = .random(),
        wantReceipt: Bool = false,
        sentAt: Date = Date()
    ) async throws(ParleyError) -> [DeliveryResult] {
        var request = Parley_V1_SendMessageRequest()
        request.messageID = id.rawValue
        request.recipients = recipients.map(\.rawValue)
        request.kind = body.isText ? .text : .binary
        request.sentAtMs = sentAt.millisecondsSince1970
        request.wantReceipt = wantReceipt
        let payload = ByteBuffer(bytes: body.bytes)
        let deadline = ContinuousClock.now + configuration.retry.requestTimeout
        while true {
            do throws(ParleyError) {
                let remaining = deadline - ContinuousClock.now
                guard remaining > .zero else {
                    throw ParleyError(code: .timedOut, message: "message \(id) was not acknowledged in time")
                }
                let connection = try await readyConnection(timeout: remaining)
                let response: Parley_V1_SendMessageResponse = try await connection.request(
                    .sendMessage,
                    request,
                    payload: payload,
                    timeout: remaining
                )
                return response.results.map(DeliveryResult.init(wire:))
            } catch {
                guard error.code == .notConnected else { throw error }
                // Lost before the answer: the server may or may not have it. Resend after the
                // reconnect; the server drops the copy if the first one arrived.
                logger.debug("resending after reconnect", metadata: ["message.id": "\(id)"])
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
    }
}

/// A bounded memory of recently received (sender, message ID) pairs, and whether the
/// application has taken each from the event stream yet.
///
/// Why a window of recent messages is enough: the server redelivers only messages whose
/// acknowledgement it has not committed, and it pushes a session's messages in one increasing
/// order and commits acknowledgements in the order it reads them. So what comes again after a
/// reconnect is at most the last messages of the previous sessions (those in flight or acked
/// but not yet committed), bounded by the delivery window plus one commit's worth of
/// acknowledgements, far below the default capacity of 10,000 (docs/PROTOCOL.md section 11.6).
struct RecentMessages {
    /// What a message's arrival from the server means.
    enum Arrival: Equatable {
        /// Not seen before (or forgotten): deliver it.
        case new
        /// A copy is still waiting for the application: drop this one.
        case waiting
        /// The application has taken it: acknowledge it again, deliver it not again.
        case taken
    }

    private struct Key: Hashable {
        var sender: UserID
        var id: MessageID
    }

    /// Each remembered pair and whether the application has taken it.
    private var taken: [Key: Bool] = [:]
    private var order: [Key] = []
    private var head = 0
    let capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
    }

    /// Remembers the pair (forgetting the oldest when full) and says whether it is new.
    mutating func arrived(sender: UserID, id: MessageID) -> Arrival {
        let key = Key(sender: sender, id: id)
        if let taken = taken[key] { return taken ? .taken : .waiting }
        taken[key] = false
        if order.count < capacity {
            order.append(key)
        } else {
            taken.removeValue(forKey: order[head])
            order[head] = key
            head = (head + 1) % capacity
        }
        return .new
    }

    /// The application took the message from the event stream.
    mutating func take(sender: UserID, id: MessageID) {
        let key = Key(sender: sender, id: id)
        if taken[key] != nil { taken[key] = true }
    }
}

/// A resumption token the server issued at the last logon, kept in memory only: never written
/// to disk, so a stolen disk holds no way to log on.
private struct ResumptionToken: Sendable {
    var text: String
    var expiresAt: Date

    /// The token a logon answer carries, if any.
    init?(_ response: Parley_V1_LogonResponse) {
        guard !response.resumptionToken.isEmpty else { return nil }
        text = response.resumptionToken
        expiresAt = Date(timeIntervalSince1970: Double(response.resumptionTokenExpiresAtMs) / 1000)
    }
}

/// A client is a swift-service-lifecycle service: put it in a `ServiceGroup`, and the group's
/// graceful shutdown (SIGTERM, say) logs it off and ends ``ParleyClient/run()``.
extension ParleyClient: Service {}
