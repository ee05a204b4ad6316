import Foundation
import Logging
import NIOCore
import ParleyCore
import ParleyLink
import ParleyStore
import ParleyWire
import Synchronization

/// One client connection: handshake, guest and logged-on states, requests, deliveries.
///
/// All state lives on the channel's event loop. Blocking work (SQLite, password hashing) runs
/// on the server's thread pools and comes back to the loop before it touches state. Requests
/// that change the session (register, log on, log off, password, user info) are serialized:
/// frames arriving meanwhile wait in a short queue, so a SEND_MESSAGE right after LOGON is
/// handled as the logged-on user.
final class ServerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    enum State: Equatable {
        case awaitingHello
        case guest
        case loggedOn(UserID)
        case closing
    }

    private let server: ServerContext
    private var logger: Logger
    private(set) var state = State.awaitingHello
    private var context: ChannelHandlerContext?
    private var handle: SessionHandle?
    /// The user whose session this connection holds in the registry. Kept apart from `state`,
    /// which turns `.closing` before the channel goes inactive: the session must still be
    /// released then.
    private var sessionUser: UserID?
    /// Which frames are handled now and which wait, and whether to read (backpressure).
    private var flow: RequestFlow
    /// The channel asked for a read that `flow` held back.
    private var readHeld = false
    /// Closed with the connection, so blocking work still queued for it is skipped.
    private let lifetime = ConnectionLifetime()
    private var delivery = DeliveryStateMachine(window: 1)
    private var flushScheduled = false
    private var slowConsumerTimer: Scheduled<Void>?

    /// How long a failed logon waits before it is answered.
    private static let failedLogonDelay = TimeAmount.milliseconds(100)
    /// Directory queries one connection may have on the shared blocking pool at once.
    private static let maximumQueries = 8

    init(server: ServerContext, logger: Logger) {
        self.server = server
        self.logger = logger
        self.flow = RequestFlow(
            maximumUnanswered: server.configuration.maximumUnansweredRequests,
            maximumQueries: Self.maximumQueries
        )
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        handle = SessionHandle(
            id: ObjectIdentifier(self),
            eventLoop: context.eventLoop,
            handler: NIOLoopBound(self, eventLoop: context.eventLoop)
        )
        if let remote = context.remoteAddress {
            logger[metadataKey: "peer.address"] = "\(remote)"
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        endSession()
        state = .closing
        flow.close()
        lifetime.close()
        slowConsumerTimer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard state != .closing else { return }
        if let frame = flow.received(frame) { handle(frame) }
    }

    /// Reads only while this connection's requests may be handled: a client that pipelines
    /// without reading its answers, or faster than they are worked off, is not read from.
    func read(context: ChannelHandlerContext) {
        guard flow.mayRead else {
            readHeld = true
            return
        }
        context.read()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        if writable {
            slowConsumerTimer?.cancel()
            slowConsumerTimer = nil
        } else if slowConsumerTimer == nil {
            let timeout = TimeAmount.nanoseconds(
                Int64(server.configuration.slowConsumerTimeout.wireMilliseconds) * 1_000_000)
            slowConsumerTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
                // Per connection: info (the library's ceiling), and counted in the metrics.
                logger.info("closing a slow consumer")
                server.metrics.slowConsumerCloses.increment()
                fail(
                    ParleyError(code: .slowConsumer, message: "the connection did not read what was sent to it in time")
                )
            }
        }
        if case .loggedOn = state {
            perform(delivery.writabilityChanged(writable))
        }
        flow.writabilityChanged(writable)
        if writable { proceed() }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? LinkEvent {
            switch event {
            case .idleTimeout:
                logger.info("closing an idle connection")
            case .framingError(let error):
                logger.info("closing a connection with a broken byte stream", metadata: ["error": "\(error)"])
            }
            state = .closing
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: Writing

    private func write(_ frame: Frame) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        scheduleFlush()
    }

    /// Flushes once per event-loop tick however many frames were written in it.
    private func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            self.context?.flush()
        }
    }

    private func respond(to request: Frame, with meta: some WireMessage, payload: ByteBuffer = ByteBuffer()) {
        guard request.requestID != 0 else { return }
        write(Frame(type: request.type.response, requestID: request.requestID, message: meta, payload: payload))
    }

    private func respond(to request: Frame, with error: ParleyError) {
        write(.error(error, requestID: request.requestID))
    }

    /// Sends a fatal error and closes the connection.
    private func fail(_ error: ParleyError) {
        guard let context, state != .closing else { return }
        state = .closing
        flow.close()
        writeFinal([.error(error, requestID: 0, fatal: true)], context: context)
    }

    /// Sends the last frames and closes at once. The flush hands them to the socket right away
    /// when it can take them; waiting for the write instead would keep a connection whose peer
    /// stopped reading (a slow consumer) open forever.
    private func writeFinal(_ frames: [Frame], context: ChannelHandlerContext) {
        for frame in frames { context.write(wrapOutboundOut(frame), promise: nil) }
        context.flush()
        context.close(promise: nil)
    }

    // MARK: Requests

    private func handle(_ frame: Frame) {
        switch state {
        case .closing:
            return
        case .awaitingHello:
            guard frame.type == .hello else {
                fail(ParleyError(code: .handshakeRequired, message: "the first frame must be HELLO"))
                return
            }
            hello(frame)
            return
        case .guest, .loggedOn:
            break
        }
        do {
            try dispatch(frame)
        } catch {
            if error.code == .invalidRequest {
                logger.info(
                    "refused an invalid request",
                    metadata: ["frame.type": "\(frame.type)", "error": "\(error.message)"])
            }
            respond(to: frame, with: error)
        }
    }

    private func dispatch(_ frame: Frame) throws(ParleyError) {
        switch frame.type {
        case .hello:
            throw ParleyError(code: .invalidRequest, message: "the handshake is already done")
        case .register:
            try requireGuest()
            register(frame, try frame.decodeMeta())
        case .logOn:
            try requireGuest()
            logOn(frame, try frame.decodeMeta())
        case .logOff:
            logOff(frame, user: try requireUser())
        case .userExists:
            let request: Parley_V1_UserIdRequest = try frame.decodeMeta()
            query(frame) { server throws(ParleyError) in
                var response = Parley_V1_BoolResponse()
                response.value = try server.store.userExists(UserID(request.userID))
                return response
            }
        case .findUserID:
            let request: Parley_V1_FindUserIdRequest = try frame.decodeMeta()
            query(frame) { server throws(ParleyError) in
                var response = Parley_V1_FindUserIdResponse()
                response.userIds = try server.store.userIDs(
                    named: request.userName.trimmingWhitespace()
                )
                .map(\.rawValue)
                return response
            }
        case .findUsers:
            let query = try frame.decodeMeta(as: Parley_V1_FindUsersRequest.self).userQuery()
            let online = query.online == .any ? [] : server.registry.onlineUsers
            self.query(frame) { server throws(ParleyError) in
                let result = try server.store.findUsers(query, onlineUserIDs: online)
                var response = Parley_V1_FindUsersResponse()
                response.truncated = result.truncated
                // Keep the answer within the frame size: long non-ASCII names can make 1000
                // users larger than a frame. What does not fit is reported as truncated.
                let budget = server.configuration.maximumFrameSize - Frame.headerSize - 64
                var size = 0
                for var user in result.users {
                    user.isOnline = server.registry.isOnline(user.userID)
                    let wire = Parley_V1_UserInfo(user)
                    let entrySize = ((try? wire.serializedBytes() as [UInt8])?.count ?? 0) + 5
                    guard size + entrySize <= budget else {
                        response.truncated = true
                        break
                    }
                    size += entrySize
                    response.users.append(wire)
                }
                return response
            }
        case .userOnline:
            _ = try requireUser()
            let request: Parley_V1_UserIdRequest = try frame.decodeMeta()
            let user = UserID(request.userID)
            query(frame) { server throws(ParleyError) in
                guard try server.store.userExists(user) else {
                    throw ParleyError(code: .userNotFound, message: "no user \(user)")
                }
                var response = Parley_V1_BoolResponse()
                response.value = server.registry.isOnline(user)
                return response
            }
        case .getUserInfo:
            _ = try requireUser()
            let request: Parley_V1_UserIdRequest = try frame.decodeMeta()
            let user = UserID(request.userID)
            query(frame) { server throws(ParleyError) in
                guard var info = try server.store.user(user)?.info else {
                    throw ParleyError(code: .userNotFound, message: "no user \(user)")
                }
                info.isOnline = server.registry.isOnline(user)
                var response = Parley_V1_UserInfoResponse()
                response.user = Parley_V1_UserInfo(info)
                return response
            }
        case .updateUserInfo:
            let me = try requireUser()
            let request: Parley_V1_UpdateUserInfoRequest = try frame.decodeMeta()
            let info = try request.info.userInfo.validated()
            serialized(frame) { server throws(ParleyError) in
                var stored = try server.store.updateUserInfo(me, to: info)
                stored.isOnline = true
                var response = Parley_V1_UserInfoResponse()
                response.user = Parley_V1_UserInfo(stored)
                return response
            }
        case .changePassword:
            let me = try requireUser()
            let request: Parley_V1_ChangePasswordRequest = try frame.decodeMeta()
            try Self.checkPassword(request.newPassword)
            serialized(frame) { server throws(ParleyError) in
                guard let stored = try server.store.user(me),
                    server.hasher.verify(request.oldPassword, against: stored.passwordHash)
                else {
                    throw ParleyError(code: .invalidCredentials, message: "the old password is wrong")
                }
                let hash = try server.hashPassword(request.newPassword)
                try server.store.updatePasswordHash(me, to: hash)
                try server.store.revokeResumptionTokens(for: me)
                return Parley_V1_Empty()
            }
        case .sendMessage:
            try sendMessage(frame, sender: try requireUser())
        case .ackMessages:
            let me = try requireUser()
            let request: Parley_V1_AckMessagesRequest = try frame.decodeMeta()
            acknowledge(request, recipient: me)
            respond(to: frame, with: Parley_V1_Empty())
        default:
            if frame.type.isResponse || frame.type == .error {
                throw ParleyError(
                    code: .invalidRequest, message: "the server sends no requests; unexpected \(frame.type)")
            }
            throw ParleyError(code: .unknownRequest, message: "unknown frame type \(frame.type)")
        }
    }

    private func requireGuest() throws(ParleyError) {
        if case .loggedOn(let user) = state {
            throw ParleyError(code: .alreadyLoggedOn, message: "this connection is logged on as \(user); log off first")
        }
    }

    private func requireUser() throws(ParleyError) -> UserID {
        guard case .loggedOn(let user) = state else {
            throw ParleyError(code: .notLoggedOn, message: "log on or register first")
        }
        return user
    }

    static func checkPassword(_ password: String) throws(ParleyError) {
        guard !password.isEmpty else {
            throw ParleyError(code: .invalidRequest, message: "a password is required")
        }
        guard password.utf8.count <= 1024 else {
            throw ParleyError(code: .invalidRequest, message: "the password is longer than 1024 bytes")
        }
    }

    /// Runs a read-only request off the loop and answers it; other requests go on meanwhile.
    private func query<M: WireMessage>(
        _ frame: Frame,
        _ work: @escaping @Sendable (ServerContext) throws(ParleyError) -> M
    ) {
        guard let context else { return }
        let server = self.server
        let lifetime = self.lifetime
        flow.started(query: true)
        server.blocking(on: context.eventLoop) { () throws(ParleyError) in
            // Queued work of a connection that closed meanwhile is dropped.
            guard !lifetime.isClosed else {
                throw ParleyError(code: .cancelled, message: "the connection closed")
            }
            return try work(server)
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            flow.answered(query: true)
            answer(frame, result)
            proceed()
        }
    }

    /// Runs a session-changing request off the loop; later frames wait until it is answered.
    private func serialized<M: WireMessage>(
        _ frame: Frame,
        _ work: @escaping @Sendable (ServerContext) throws(ParleyError) -> M
    ) {
        guard let context else { return }
        flow.sessionChangeStarted()
        let server = self.server
        server.blocking(on: context.eventLoop) { () throws(ParleyError) in try work(server) }
            .assumeIsolated()
            .whenComplete { [self] result in
                answer(frame, result)
                resume()
            }
    }

    private func answer<M: WireMessage>(_ frame: Frame, _ result: Result<M, any Error>) {
        guard state != .closing else { return }
        switch result {
        case .success(let response):
            respond(to: frame, with: response)
        case .failure(let error):
            let error = Self.parleyError(error)
            if error.code == .storageError || error.code == .internalError {
                logger.info("a request failed", metadata: ["frame.type": "\(frame.type)", "error": "\(error)"])
            }
            respond(to: frame, with: error)
        }
    }

    static func parleyError(_ error: any Error) -> ParleyError {
        if let error = error as? ParleyError { return error }
        return ParleyError(code: .internalError, message: "the server could not complete the request", cause: error)
    }

    /// A session-changing request was answered: the frames that waited behind it go on.
    private func resume() {
        flow.sessionChangeEnded()
        proceed()
    }

    /// Handles the waiting frames that may be handled now, then reads again if it may.
    private func proceed() {
        while state != .closing, let frame = flow.next() {
            handle(frame)
        }
        // No flush here: every answer written schedules one, coalesced per event-loop tick.
        if readHeld, flow.mayRead, let context {
            readHeld = false
            context.read()
        }
    }

    // MARK: Handshake

    private func hello(_ frame: Frame) {
        let hello: Parley_V1_Hello
        do {
            hello = try frame.decodeMeta()
        } catch {
            fail(error)
            return
        }
        guard hello.magic == WireProtocol.magic else {
            fail(ParleyError(code: .protocolViolation, message: "HELLO magic must be \"\(WireProtocol.magic)\""))
            return
        }
        guard hello.minVersion <= WireProtocol.version, WireProtocol.version <= hello.maxVersion else {
            fail(
                ParleyError(
                    code: .unsupportedVersion,
                    message:
                        "this server speaks protocol version \(WireProtocol.version) only; the client offered \(hello.minVersion)...\(hello.maxVersion)"
                )
            )
            return
        }
        let configuration = server.configuration
        var ok = Parley_V1_HelloOk()
        ok.version = WireProtocol.version
        ok.capabilities = []
        ok.agent = "parley-swift/\(ParleyServer.version)"
        ok.maxFrameSize = UInt32(clamping: configuration.maximumFrameSize)
        ok.heartbeatIntervalMs = configuration.heartbeatInterval.wireMilliseconds
        ok.idleTimeoutMs = configuration.idleTimeout.wireMilliseconds
        ok.serverUserID = UserID.server.rawValue
        ok.serverName = configuration.serverName
        state = .guest
        logger.debug("handshake done", metadata: ["client.agent": "\(hello.agent)"])
        write(Frame(type: FrameType.hello.response, requestID: frame.requestID, message: ok))
    }

    // MARK: Accounts

    private func register(_ frame: Frame, _ request: Parley_V1_RegisterRequest) {
        let info: UserInfo
        let node: NodeDeclaration?
        do {
            info = try request.info.userInfo.validated()
            try Self.checkPassword(request.password)
            node = try NodeDeclaration.validated(
                publicKey: request.nodePublicKey,
                nodeID: request.nodeID,
                directAddresses: request.directAddresses,
                allowsDirect: request.allowDirect
            )
        } catch {
            respond(to: frame, with: error)
            return
        }
        let requested = request.requestedUserID == 0 ? nil : UserID(request.requestedUserID)
        let minimum = server.configuration.minimumUserID
        logOnSerialized(frame, node: node, check: .registration) { server throws(ParleyError) in
            let hash = try server.hashPassword(request.password)
            let user = try server.store.registerUser(
                info,
                passwordHash: hash,
                requestedID: requested,
                minimumID: minimum,
                now: Date()
            )
            server.logger.debug("registered a user", metadata: ["user.id": "\(user.userID)"])
            return Authenticated(
                info: user, storedMessages: 0, token: try server.issueResumptionToken(for: user.userID))
        }
    }

    private func logOn(_ frame: Frame, _ request: Parley_V1_LogonRequest) {
        let user = UserID(request.userID)
        let node: NodeDeclaration?
        do {
            node = try NodeDeclaration.validated(
                publicKey: request.nodePublicKey,
                nodeID: request.nodeID,
                directAddresses: request.directAddresses,
                allowsDirect: request.allowDirect
            )
        } catch {
            respond(to: frame, with: error)
            return
        }
        if !request.resumptionToken.isEmpty {
            logOnWithToken(frame, request, node: node)
            return
        }
        let attempt = LogonThrottle.Attempt(user: user, address: peerAddress, nodeID: node?.nodeID)
        let ticket: LogonThrottle.Ticket
        switch server.throttle.withLock({ $0.begin(attempt, now: .now) }) {
        case .success(let allowed):
            ticket = allowed
        case .failure(let refusal):
            refuseLogon(frame, user: user, refusal)
            return
        }
        logOnSerialized(frame, node: node, check: .password(ticket)) { server throws(ParleyError) in
            guard let stored = try server.store.user(user),
                server.hasher.verify(request.password, against: stored.passwordHash)
            else {
                throw ParleyError(code: .invalidCredentials, message: "unknown user ID or wrong password")
            }
            return Authenticated(
                info: stored.info,
                storedMessages: try server.store.pendingMessageCount(for: user),
                token: try server.issueResumptionToken(for: user)
            )
        }
    }

    /// A LOGON with a resumption token instead of a password: redeems it and issues its
    /// successor in one transaction, without the password hash's cost.
    private func logOnWithToken(_ frame: Frame, _ request: Parley_V1_LogonRequest, node: NodeDeclaration?) {
        let user = UserID(request.userID)
        guard request.password.isEmpty else {
            respond(
                to: frame,
                with: ParleyError(code: .invalidRequest, message: "a password and a resumption token; send one"))
            return
        }
        if let refusal = server.throttle.withLock({ $0.beginResumption(address: peerAddress, now: .now) }) {
            refuseLogon(frame, user: user, refusal)
            return
        }
        let presented = ResumptionToken.hash(of: request.resumptionToken)
        logOnSerialized(frame, node: node, check: .resumptionToken) { server throws(ParleyError) in
            let next = ResumptionToken.make(lifetime: server.configuration.resumptionTokenLifetime, now: Date())
            guard
                try server.store.redeemResumptionToken(
                    hash: presented, for: user, replacingWith: next.hash, expiresAt: next.expiresAt, now: Date()),
                let stored = try server.store.user(user)
            else {
                throw ParleyError(
                    code: .invalidCredentials, message: "unknown, expired or revoked resumption token")
            }
            return Authenticated(
                info: stored.info,
                storedMessages: try server.store.pendingMessageCount(for: user),
                // A lifetime of zero issues none: the stored one has already expired.
                token: server.configuration.resumptionTokenLifetime > .zero ? next : nil,
                resumed: true
            )
        }
    }

    /// The source address the logon throttle counts: the peer's IP without its port.
    private var peerAddress: String {
        context?.remoteAddress?.ipAddress ?? ""
    }

    /// Answers a LOGON the throttle refused without checking its password.
    ///
    /// The one place where refused logons pass, so the one place that counts them.
    private func refuseLogon(_ frame: Frame, user: UserID, _ refusal: LogonThrottle.Refusal) {
        server.metrics.logonsThrottled.increment()
        logger.debug("refused a logon unchecked", metadata: ["user.id": "\(user)", "refusal": "\(refusal)"])
        let message =
            switch refusal {
            case .userBlocked: "too many failed logons for user \(user); retry later"
            case .addressBlocked: "too many failed logons from this address; retry later"
            case .userBusy: "another logon for user \(user) is being checked; retry later"
            case .addressBusy: "too many logons from this address are being checked; retry later"
            }
        respond(
            to: frame,
            with: ParleyError(
                code: .tooManyAttempts,
                message: message,
                retryAfterMilliseconds: max(refusal.retryAfter.wireMilliseconds, 1)
            )
        )
    }

    /// Reports a checked logon's outcome to the throttle and logs the back-offs it starts.
    private func finishAttempt(_ ticket: LogonThrottle.Ticket, _ outcome: LogonThrottle.Outcome) {
        logBackoffs(server.throttle.withLock { $0.finish(ticket, outcome, now: .now) })
    }

    private func logBackoffs(_ blocks: [LogonThrottle.Block]) {
        for block in blocks {
            // The one place where back-offs start, so the one place that counts them.
            server.metrics.logonBackoffs.increment()
            let scope: Logger.Metadata =
                switch block.scope {
                case .user(let user): ["user.id": "\(user)"]
                case .address(let address): ["source.address": "\(address)"]
                }
            logger.info(
                "logons throttled after repeated failures",
                metadata: scope.merging(
                    ["failures": "\(block.failures)", "backoff.ms": "\(block.duration.wireMilliseconds)"]
                ) { $1 }
            )
        }
    }

    /// Records the node an authenticated user declared, if any.
    ///
    /// - Returns: the user's info with the node as stored.
    private static func record(
        _ node: NodeDeclaration?,
        for user: UserInfo,
        server: ServerContext
    ) throws(ParleyError) -> UserInfo {
        guard let node else { return user }
        let recorded = try server.store.recordNode(
            for: user.userID,
            nodeID: node.nodeID,
            publicKey: node.publicKey,
            directAddresses: node.directAddresses,
            allowsDirect: node.allowsDirect,
            now: Date()
        )
        server.logger.debug("recorded a node", metadata: ["user.id": "\(user.userID)", "node.id": "\(node.nodeID)"])
        return recorded
    }

    /// Checks credentials off the loop, then makes this connection the user's session, then
    /// records the declared node: a logon refused for any reason records nothing.
    private func logOnSerialized(
        _ frame: Frame,
        node: NodeDeclaration?,
        check: LogonCheck,
        _ authenticate: @escaping @Sendable (ServerContext) throws(ParleyError) -> Authenticated
    ) {
        guard let context else { return }
        flow.sessionChangeStarted()
        let server = self.server
        server.blocking(on: context.eventLoop) { () throws(ParleyError) in try authenticate(server) }
            .assumeIsolated()
            .whenComplete { [self] result in
                switch (check, result) {
                case (.password(let ticket), _):
                    let outcome: LogonThrottle.Outcome =
                        switch result {
                        case .success: .succeeded
                        case .failure(let error):
                            Self.parleyError(error).code == .invalidCredentials ? .failed : .abandoned
                        }
                    finishAttempt(ticket, outcome)
                case (.registration, .success(let granted)), (.resumptionToken, .success(let granted)):
                    // The source that registered a user, or held its token, is a known good
                    // source for it.
                    let attempt = LogonThrottle.Attempt(
                        user: granted.info.userID, address: peerAddress, nodeID: node?.nodeID)
                    server.throttle.withLock { $0.trust(attempt, now: .now) }
                case (.resumptionToken, .failure(let error)) where Self.parleyError(error).code == .invalidCredentials:
                    let blocks = server.throttle.withLock { $0.resumptionFailed(address: peerAddress, now: .now) }
                    logBackoffs(blocks)
                case (.registration, .failure), (.resumptionToken, .failure):
                    break
                }
                switch result {
                case .success(let granted):
                    claimSession(frame, granted, node: node)
                case .failure(let error):
                    let error = Self.parleyError(error)
                    if error.code == .invalidCredentials { server.metrics.logonFailures.increment() }
                    guard error.code == .invalidCredentials, let context = self.context else {
                        respond(to: frame, with: error)
                        resume()
                        return
                    }
                    // A pause on every failure slows guessing even before the back-off starts;
                    // the connection stays busy meanwhile, so pipelined guesses wait too.
                    context.eventLoop.assumeIsolated().scheduleTask(in: Self.failedLogonDelay) { [self] in
                        respond(to: frame, with: error)
                        resume()
                    }
                }
            }
    }

    /// Applies the one-session rule (docs/PROTOCOL.md section 9.2), then records the node.
    private func claimSession(_ frame: Frame, _ granted: Authenticated, node: NodeDeclaration?) {
        let user = granted.info
        guard state == .guest, let handle, let context else {
            resume()
            return
        }
        switch server.registry.claim(
            user.userID,
            for: handle,
            nodeID: node?.nodeID,
            replaceExisting: server.configuration.replacesExistingSession
        ) {
        case .rejected:
            respond(
                to: frame,
                with: ParleyError(
                    code: .sessionExists, message: "user \(user.userID) is logged on from another connection")
            )
            resume()
            return
        case .replaced(let previous, let takeover):
            logger.info(
                "took over a session", metadata: ["user.id": "\(user.userID)", "takeover": "\(takeover)"])
            previous.execute { $0.replaced(because: takeover) }
        case .claimed:
            break
        }
        // Held from now on, so a close before the node is recorded releases it.
        sessionUser = user.userID
        guard let node else {
            completeLogOn(frame, granted)
            resume()
            return
        }
        let server = self.server
        server.blocking(on: context.eventLoop) { () throws(ParleyError) in
            try Self.record(node, for: user, server: server)
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            switch result {
            case .success(let recorded) where sessionUser == user.userID:
                var granted = granted
                granted.info = recorded
                completeLogOn(frame, granted)
            case .success:
                // Closed, or taken over by yet another logon, while the node was recorded.
                respond(
                    to: frame,
                    with: ParleyError(
                        code: .sessionExists, message: "another logon of user \(user.userID) took the session over")
                )
            case .failure(let error):
                endSession()
                respond(to: frame, with: Self.parleyError(error))
            }
            resume()
        }
    }

    private func completeLogOn(_ frame: Frame, _ granted: Authenticated) {
        let user = granted.info
        let storedMessages = granted.storedMessages
        guard state == .guest else { return }
        state = .loggedOn(user.userID)
        server.metrics.logonSuccesses.increment()
        if granted.resumed { server.metrics.logonsResumed.increment() }
        logger[metadataKey: "user.id"] = "\(user.userID)"
        logger.debug(
            "logged on",
            metadata: [
                "stored.messages": "\(storedMessages)",
                "credential": granted.resumed ? "resumption token" : "password",
            ])
        var info = user
        info.isOnline = true
        var response = Parley_V1_LogonResponse()
        response.user = Parley_V1_UserInfo(info)
        response.storedMessages = UInt32(clamping: storedMessages)
        if let token = granted.token {
            response.resumptionToken = token.text
            response.resumptionTokenExpiresAtMs = token.expiresAt.millisecondsSince1970
        }
        respond(to: frame, with: response)
        delivery = DeliveryStateMachine(
            window: server.configuration.deliveryWindow,
            writable: context?.channel.isWritable ?? true
        )
        perform(delivery.start())
    }

    /// Logs off and revokes the user's resumption tokens: a client that says goodbye does not
    /// come back without its password.
    private func logOff(_ frame: Frame, user: UserID) {
        endSession()
        state = .guest
        serialized(frame) { server throws(ParleyError) in
            try server.store.revokeResumptionTokens(for: user)
            return Parley_V1_Empty()
        }
    }

    /// Leaves the registry; stored messages that were pushed but not acknowledged stay stored.
    private func endSession() {
        guard let user = sessionUser, let handle else { return }
        sessionUser = nil
        server.registry.release(user, for: handle.id)
        logger.debug("logged off")
        logger[metadataKey: "user.id"] = nil
        delivery = DeliveryStateMachine(window: 1)
    }

    /// Another connection logged on as this user and took this session over.
    func replaced(because takeover: SessionRegistry.Takeover) {
        if state == .guest {
            // Taken over while this logon was still recording its node: it must not complete.
            sessionUser = nil
            return
        }
        guard case .loggedOn = state, let context else { return }
        var event = Parley_V1_SessionReplacedEvent()
        switch takeover {
        case .newerSession:
            event.reason = "the same user logged on from another connection"
        case .sameNode:
            event.reason = "the same node logged on again from another connection; this session was stale"
        }
        state = .closing
        writeFinal(
            [
                Frame(type: .sessionReplaced, requestID: 0, message: event),
                .error(ParleyError(code: .sessionReplaced, message: event.reason), requestID: 0, fatal: true),
            ],
            context: context
        )
    }

    // MARK: Messages

    private func sendMessage(_ frame: Frame, sender: UserID) throws(ParleyError) {
        let request: Parley_V1_SendMessageRequest = try frame.decodeMeta()
        server.metrics.messageReceived()
        guard request.messageID != 0 else {
            throw ParleyError(code: .invalidRequest, message: "message ID 0 is reserved")
        }
        var seen = Set<UInt32>()
        let recipients = request.recipients.filter { seen.insert($0).inserted }.map(UserID.init(rawValue:))
        guard !recipients.isEmpty else {
            throw ParleyError(code: .invalidRequest, message: "a message needs at least one recipient")
        }
        guard recipients.count <= WireProtocol.maximumRecipients else {
            throw ParleyError(
                code: .tooManyRecipients,
                message: "at most \(WireProtocol.maximumRecipients) recipients per message"
            )
        }
        let isText: Bool
        switch request.kind {
        case .text:
            isText = true
            let valid = frame.payload.withUnsafeReadableBytes { String(validating: $0, as: UTF8.self) != nil }
            guard valid else {
                throw ParleyError(code: .invalidUTF8, message: "a text message must be valid UTF-8")
            }
        case .binary:
            isText = false
        case .UNRECOGNIZED(let raw):
            throw ParleyError(code: .invalidRequest, message: "unknown payload kind \(raw)")
        }
        let sentAt = Date(millisecondsSince1970: request.sentAtMs)
        var results: [UserID: DeliveryResult.Status] = [:]
        if recipients.contains(.server) {
            let body = MessageBody(isText: isText, bytes: Array(frame.payload.readableBytesView))
            results[.server] = server.applicationInbox.offer(
                Message(
                    id: MessageID(request.messageID),
                    sender: sender,
                    recipients: recipients,
                    body: body,
                    sentAt: sentAt,
                    deliveredAt: Date()
                )
            )
        }
        let users = recipients.filter { $0 != .server }
        guard !users.isEmpty else {
            respond(to: frame, with: Self.sendResponse(recipients, results))
            return
        }
        let message = NewMessage(
            messageID: MessageID(request.messageID),
            sender: sender,
            recipients: users,
            allRecipients: recipients,
            isText: isText,
            body: Array(frame.payload.readableBytesView),
            sentAt: sentAt,
            wantsReceipt: request.wantReceipt
        )
        guard let handle else { return }
        let registry = server.registry
        let serverResults = results
        flow.started(query: false)
        server.committer.submit(
            MessageCommitter.Submission(message: message, payload: frame.payload) { outcome in
                // Online status is read now, on the committer thread, right after the commit.
                var statuses = serverResults
                switch outcome {
                case .success(let outcomes):
                    for user in users {
                        switch outcomes[user] {
                        case .stored?:
                            statuses[user] = registry.isOnline(user) ? .acceptedOnline : .acceptedOffline
                        case .recipientNotFound?, nil:
                            statuses[user] = .failed(
                                ParleyError(code: .recipientNotFound, message: "no user \(user)")
                            )
                        }
                    }
                    let duplicates = Set(
                        outcomes.compactMap { key, value -> UserID? in
                            if case .stored(let delivery) = value, delivery.duplicate { return key }
                            return nil
                        }
                    )
                    let response = Self.sendResponse(recipients, statuses, duplicates: duplicates)
                    handle.execute { $0.stored(frame, .success(response)) }
                case .failure(let error):
                    handle.execute { $0.stored(frame, .failure(error)) }
                }
            }
        )
    }

    /// A SEND_MESSAGE was stored (or failed): answers it and lets waiting frames go on.
    private func stored(_ frame: Frame, _ result: Result<Parley_V1_SendMessageResponse, ParleyError>) {
        flow.answered(query: false)
        switch result {
        case .success(let response): respond(to: frame, with: response)
        case .failure(let error): respond(to: frame, with: error)
        }
        proceed()
    }

    private static func sendResponse(
        _ recipients: [UserID],
        _ statuses: [UserID: DeliveryResult.Status],
        duplicates: Set<UserID> = []
    ) -> Parley_V1_SendMessageResponse {
        var response = Parley_V1_SendMessageResponse()
        response.results = recipients.map { recipient in
            DeliveryResult(
                recipient: recipient,
                status: statuses[recipient]
                    ?? .failed(ParleyError(code: .internalError, message: "no result for \(recipient)")),
                duplicate: duplicates.contains(recipient)
            ).wire
        }
        return response
    }

    private func acknowledge(_ request: Parley_V1_AckMessagesRequest, recipient: UserID) {
        guard !request.messages.isEmpty else { return }
        let keys = request.messages.map {
            DeliveryStateMachine.Key(sender: UserID($0.sender), messageID: MessageID($0.messageID))
        }
        server.committer.acknowledge(
            MessageCommitter.Acknowledgement(
                recipient: recipient,
                messages: keys.map { (sender: $0.sender, messageID: $0.messageID) }
            )
        )
        perform(delivery.acknowledged(keys).next)
    }

    /// A message for this session was just committed.
    func liveDelivery(_ live: MessageCommitter.LiveDelivery) {
        guard case .loggedOn(let user) = state, user == live.recipient else { return }
        let key = DeliveryStateMachine.Key(sender: live.message.sender, messageID: live.message.messageID)
        let action = delivery.liveMessage(sequence: live.sequence, key: key)
        if case .push = action {
            push(
                messageID: live.message.messageID,
                sender: live.message.sender,
                recipients: live.message.allRecipients,
                isText: live.message.isText,
                payload: live.payload,
                sentAt: live.message.sentAt,
                storedAt: live.storedAt
            )
        } else {
            perform(action)
        }
    }

    func deliveryReceipt(_ ack: AcknowledgedMessage) {
        guard case .loggedOn(let user) = state, user == ack.sender else { return }
        var event = Parley_V1_DeliveryReceiptEvent()
        event.messageID = ack.messageID.rawValue
        event.recipient = ack.recipient.rawValue
        event.acknowledgedAtMs = ack.acknowledgedAt.millisecondsSince1970
        write(Frame(type: .deliveryReceipt, requestID: 0, message: event))
    }

    private func perform(_ action: DeliveryStateMachine.Action) {
        switch action {
        case .none, .push:
            // Live pushes carry their message and are written by `liveDelivery`.
            break
        case .load(let after, let limit):
            load(after: after, limit: limit)
        }
    }

    private func load(after: Int64, limit: Int) {
        guard case .loggedOn(let user) = state, let context else { return }
        server.blocking(on: context.eventLoop) { [store = server.store] () throws(ParleyError) in
            try store.pendingMessages(for: user, after: after, limit: limit)
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            guard case .loggedOn(let current) = state, current == user else { return }
            switch result {
            case .success(let messages):
                let keyed = messages.map {
                    (sequence: $0.sequence, key: DeliveryStateMachine.Key(sender: $0.sender, messageID: $0.messageID))
                }
                let (pushed, next) = delivery.loaded(keyed, limit: limit)
                let wanted = Set(pushed)
                for message in messages where wanted.contains(message.sequence) {
                    push(
                        messageID: message.messageID,
                        sender: message.sender,
                        recipients: message.recipients,
                        isText: message.isText,
                        payload: ByteBuffer(bytes: message.body),
                        sentAt: message.sentAt,
                        storedAt: message.storedAt
                    )
                }
                perform(next)
            case .failure(let error):
                server.metrics.storageErrors.increment()
                logger.info("loading stored messages failed", metadata: ["error": "\(error)"])
                delivery.loadFailed()
            }
        }
    }

    private func push(
        messageID: MessageID,
        sender: UserID,
        recipients: [UserID],
        isText: Bool,
        payload: ByteBuffer,
        sentAt: Date,
        storedAt: Date
    ) {
        var event = Parley_V1_MessageEvent()
        event.messageID = messageID.rawValue
        event.sender = sender.rawValue
        event.recipients = recipients.map(\.rawValue)
        event.kind = isText ? .text : .binary
        event.sentAtMs = sentAt.millisecondsSince1970
        event.deliveredAtMs = Date().millisecondsSince1970
        event.storedAtMs = storedAt.millisecondsSince1970
        write(Frame(type: .message, requestID: 0, message: event, payload: payload))
        server.metrics.messageDelivered()
    }

    // MARK: Shutdown

    /// Tells the client the server is going away, then closes.
    func serverShuttingDown(reason: String) {
        guard let context, state != .closing else { return }
        var event = Parley_V1_ServerShutdownEvent()
        event.reason = reason
        state = .closing
        writeFinal([Frame(type: .serverShutdown, requestID: 0, message: event)], context: context)
    }
}

@available(*, unavailable)
extension ServerConnectionHandler: Sendable {}

/// Whether a connection is still open, readable from the blocking pool.
private final class ConnectionLifetime: Sendable {
    private let closed = Atomic<Bool>(false)

    var isClosed: Bool { closed.load(ordering: .relaxed) }

    func close() { closed.store(true, ordering: .relaxed) }
}
