import Foundation
import Logging
import NIOCore
import ParleyCore
import ParleyLink
import ParleyServerStore
import ParleyWire
import Synchronization

/// One client connection: carries out the session protocol (``SessionStateMachine``) and routes
/// requests to the request families.
///
/// All state lives on the channel's event loop. Blocking work (SQLite, password hashing) runs
/// on the server's thread pools and comes back to the loop before it touches state. Requests
/// that change the session (register, log on, log off, password, user info) are serialized:
/// frames arriving meanwhile wait in a short queue, so a SEND_MESSAGE right after LOGON is
/// handled as the logged-on user.
///
/// The handler does the handshake, the one-session rule (claiming the registry entry, taking a
/// session over, releasing it), flow control, writing and closing. What a request means is up to
/// the ``RequestFamily`` that declared its frame type (``families``).
///
/// It is not a handler of the channel's pipeline: the connection's ``LinkHandler`` hands it
/// every frame and event (``attach(to:)``, ``LinkFrameReceiver``), and it writes through the
/// link. A pipeline context per connection less (about 120 bytes of an idle connection), and no
/// pass through a second handler for each read, flush and read request.
final class ServerConnectionHandler: LinkFrameReceiver {
    // Stored properties in an order that packs them (a server holds tens of thousands of
    // these): the word-sized ones first, the flags last.

    let server: ServerContext
    /// This connection's number (``ServerConnection/id``, the session's ID for the admin).
    let connectionID: UInt64
    /// When the connection was accepted.
    let connectedAt = Date()
    /// The channel's (its cached copy), for the logger, the throttle and the admin; also read
    /// from other threads (``SessionHandle``), as are the other constants.
    let remoteAddress: SocketAddress?
    /// The connection's link, which hands this handler its frames and events and takes its
    /// frames (also frames already laid out as bytes: ``write(_:)``,
    /// ``write(type:requestID:payload:metaCapacity:meta:)``).
    private var link: LinkHandler?
    /// The contacts family's state of this connection; nil while it keeps none.
    var presenceWatch: PresenceWatch?
    /// The client's agent from its HELLO.
    private var agent = ""
    /// Set while the outbound queue is over its limit (boxed: a `Scheduled` is three words,
    /// and most connections never need one).
    private var slowConsumerTimer: ScheduledBox?
    /// What the messages family pushes to this session and when (``MessagesFamily``).
    var delivery = DeliveryStateMachine(window: 1)
    /// The session protocol's state and the request flow.
    private(set) var machine: SessionStateMachine
    /// The channel asked for a read that the flow held back.
    private var readHeld = false
    private var flushScheduled = false
    /// HELLO negotiated the `presence` capability: the session gets PRESENCE events.
    private(set) var negotiatedPresence = false
    /// HELLO negotiated the `commands` capability: the session takes COMMAND events.
    private(set) var negotiatedCommands = false
    /// HELLO negotiated the `files` capability: the session takes TRANSFER_OFFER and
    /// TRANSFER_STATUS events (docs/PROTOCOL.md section 26).
    private(set) var negotiatedFiles = false

    /// Where the session can be reached from other threads; nil while the handler is not
    /// attached to its link. Made when asked for rather than kept.
    var handle: SessionHandle? {
        context.map { SessionHandle(eventLoop: $0.eventLoop, handler: self) }
    }

    /// The session's identity, as its handle has it (``SessionHandle/id``), attached or not.
    var sessionID: ObjectIdentifier { ObjectIdentifier(self) }

    /// This connection's logger: the server's, with the peer's address and the logged-on user.
    /// Made when used (rarely: errors, debug lines), so that an idle connection holds no copy of
    /// the logger or its metadata (about 0.6 KB each).
    var logger: Logger {
        var logger = server.logger
        if let remoteAddress { logger[metadataKey: "peer.address"] = "\(remoteAddress)" }
        if let user = machine.identity.user { logger[metadataKey: "user.id"] = "\(user)" }
        return logger
    }

    /// Directory queries one connection may have on the shared blocking pool at once.
    private static let maximumQueries = 8

    /// The agents of all connections, one copy of each (most connections of a server run one of
    /// a few clients, and an agent longer than 15 bytes is a heap string of its own).
    private static let agents = InternedStrings(limit: 64)

    /// - Parameter remoteAddress: the channel's `remoteAddress` (its cached copy).
    init(server: ServerContext, remoteAddress: SocketAddress?) {
        self.server = server
        self.remoteAddress = remoteAddress
        self.connectionID = server.nextConnectionID()
        self.machine = SessionStateMachine(
            flow: RequestFlow(
                maximumUnanswered: server.configuration.maximumUnansweredRequests,
                maximumQueries: Self.maximumQueries
            )
        )
    }

    /// The messages family, which the committer reaches through the connection (live
    /// deliveries, receipts).
    private static let messages = MessagesFamily()

    /// The request families, in the order of ``router``'s indices. A new family is added here.
    /// One instance of each serves every connection: what a family keeps of a connection lives
    /// in the connection (``delivery``, ``presenceWatch``), so that an idle connection holds no
    /// object of any family.
    private static let families: [any RequestFamily & Sendable] = [
        AccountsFamily(), DirectoryFamily(), messages, ContactsFamily(), CommandsFamily(), HistoryFamily(),
        TransfersFamily(),
    ]

    /// The router of every connection.
    private static let router = RequestRouter(families)

    /// The family at `index` of ``families``.
    private func family(at index: Int) -> any RequestFamily {
        Self.families[index]
    }

    /// Calls `body` with every family, in ``families``' order.
    private func forEachFamily(_ body: (any RequestFamily) -> Void) {
        for family in Self.families { body(family) }
    }

    /// The request families of every connection, in ``families``' order, and the messages family
    /// among them.
    static var requestFamilies: (messages: MessagesFamily, all: [any RequestFamily]) { (messages, families) }

    /// What the families may do on this connection.
    private var session: SessionContext { SessionContext(connection: self) }

    /// The link's context, while attached: this handler has no place in the pipeline of its own
    /// (the link hands it every event, ``attach(to:)``), so what it does to the channel it does
    /// from the link's.
    var context: ChannelHandlerContext? { link?.channelContext }

    // MARK: Channel events

    /// Makes this handler `link`'s session: the link (already in its channel's pipeline) hands
    /// it every frame and event from now on. On the channel's event loop.
    func attach(to link: LinkHandler) {
        guard link.channelContext != nil else { return }
        self.link = link
        link.deliverFrames(to: self)
    }

    func linkRemoved() {
        link = nil
    }

    func linkInactive() {
        endSession()
        machine.close()
        slowConsumerTimer?.scheduled.cancel()
        if let context { server.registry.removeConnection(context.channel) }
        server.hooks.notify(.connectionClosed(connection))
    }

    func linkReceived(_ frame: Frame) {
        perform(machine.received(frame))
    }

    /// Reads only while this connection's requests may be handled: a client that pipelines
    /// without reading its answers, or faster than they are worked off, is not read from.
    func linkShouldRead() -> Bool {
        guard machine.mayRead else {
            readHeld = true
            return false
        }
        return true
    }

    func linkReadComplete() {
        link?.flush()
    }

    func linkWritabilityChanged(_ writable: Bool) {
        guard let context else { return }
        if writable {
            slowConsumerTimer?.scheduled.cancel()
            slowConsumerTimer = nil
        } else if slowConsumerTimer == nil {
            let timeout = TimeAmount.nanoseconds(
                Int64(server.configuration.slowConsumerTimeout.wireMilliseconds) * 1_000_000)
            let scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
                // Per connection: info (the library's ceiling), and counted in the metrics.
                logger.debug("closing a slow consumer")
                server.metrics.slowConsumerCloses.increment()
                fail(
                    ParleyError(code: .slowConsumer, message: "the connection did not read what was sent to it in time")
                )
            }
            slowConsumerTimer = ScheduledBox(scheduled)
        }
        forEachFamily { $0.writabilityChanged(writable, in: session) }
        machine.writabilityChanged(writable)
        if writable { proceed() }
    }

    func linkEvent(_ event: LinkEvent) {
        switch event {
        case .idleTimeout:
            logger.debug("closing an idle connection")
        case .framingError(let error):
            logger.debug("closing a connection with a broken byte stream", metadata: ["error": "\(error)"])
        }
        // The session ends now, not when the close completes: closing TLS towards a peer that
        // went silent waits for its close_notify, and its contacts must see it offline at the
        // idle timeout (docs/PROTOCOL.md section 23.4).
        endSession()
        machine.close()
    }

    func linkErrorCaught(_ error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        context?.close(promise: nil)
    }

    // MARK: Writing

    func write(_ frame: Frame) {
        guard let link else { return }
        // Handed to the link directly: no box for the frame on its way down the pipeline.
        link.write(frame)
        scheduleFlush()
    }

    /// Writes a frame whose meta section `meta` writes straight into the frame's bytes (the
    /// message path's answers and pushes: laid out in the link's buffer for the flush, no buffer
    /// of their own, no copy of the meta).
    func write(
        type: FrameType,
        requestID: UInt32,
        payload: ByteBuffer = ByteBuffer(),
        metaCapacity: Int,
        meta writeMeta: (inout ByteBuffer) -> Void
    ) {
        guard let link else { return }
        link.write(type: type, requestID: requestID, payload: payload, metaCapacity: metaCapacity, meta: writeMeta)
        scheduleFlush()
    }

    /// Flushes once per event-loop tick however many frames were written in it.
    private func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            link?.flush()
        }
    }

    func respond(to request: Frame, with meta: some WireMessage, payload: ByteBuffer = ByteBuffer()) {
        guard request.requestID != 0 else { return }
        write(Frame(type: request.type.response, requestID: request.requestID, message: meta, payload: payload))
    }

    func respond(to request: Frame, with error: ParleyError) {
        write(.error(error, requestID: request.requestID))
    }

    /// Sends a fatal error and closes the connection.
    func fail(_ error: ParleyError) {
        guard let context, machine.close() else { return }
        writeFinal([.error(error, requestID: 0, fatal: true)], context: context)
    }

    /// Sends the last frames and closes at once. The flush hands them to the socket right away
    /// when it can take them; waiting for the write instead would keep a connection whose peer
    /// stopped reading (a slow consumer) open forever.
    private func writeFinal(_ frames: [Frame], context: ChannelHandlerContext) {
        for frame in frames { link?.write(frame) }
        link?.flush()
        context.close(promise: nil)
    }

    // MARK: Requests

    /// Carries out what the state machine decided for a frame.
    private func perform(_ action: SessionStateMachine.FrameAction) {
        switch action {
        case .none:
            return
        case .fail(let error):
            fail(error)
        case .hello(let frame):
            hello(frame)
        case .route(let frame, _):
            route(frame)
        }
    }

    private func route(_ frame: Frame) {
        do throws(ParleyError) {
            guard let index = Self.router.family(for: frame.type) else {
                throw Self.unroutable(frame.type)
            }
            try family(at: index).handle(frame, in: session)
        } catch {
            if error.code == .invalidRequest {
                logger.debug(
                    "refused an invalid request",
                    metadata: ["frame.type": "\(frame.type)", "error": "\(error.message)"])
            }
            respond(to: frame, with: error)
        }
    }

    /// The error for a frame no family handles.
    static func unroutable(_ type: FrameType) -> ParleyError {
        if type == .hello {
            return ParleyError(code: .invalidRequest, message: "the handshake is already done")
        }
        if type.isResponse || type == .error {
            return ParleyError(code: .invalidRequest, message: "the server sends no requests; unexpected \(type)")
        }
        return ParleyError(code: .unknownRequest, message: "unknown frame type \(type)")
    }

    /// Runs a read-only request off the loop and answers it; other requests go on meanwhile.
    func query<M: WireMessage>(
        _ frame: Frame,
        _ work: @escaping @Sendable (ServerContext) throws(ParleyError) -> M
    ) {
        guard let context else { return }
        let server = self.server
        // Read from the blocking pool: a channel's `isActive` is safe to read from any thread.
        let channel = context.channel
        machine.started(query: true)
        server.blocking(on: context.eventLoop) { () throws(ParleyError) in
            // Queued work of a connection that closed meanwhile is dropped.
            guard channel.isActive else {
                throw ParleyError(code: .cancelled, message: "the connection closed")
            }
            return try work(server)
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            machine.answered(query: true)
            answer(frame, result)
            proceed()
        }
    }

    /// Runs a session-changing request off the loop; later frames wait until it is answered.
    func serialized<M: WireMessage>(
        _ frame: Frame,
        _ work: @escaping @Sendable (ServerContext) throws(ParleyError) -> M
    ) {
        guard let context else { return }
        machine.sessionChangeStarted()
        let server = self.server
        server.blocking(on: context.eventLoop) { () throws(ParleyError) in try work(server) }
            .assumeIsolated()
            .whenComplete { [self] result in
                answer(frame, result)
                resume()
            }
    }

    private func answer<M: WireMessage>(_ frame: Frame, _ result: Result<M, any Error>) {
        guard !machine.isClosing else { return }
        switch result {
        case .success(let response):
            respond(to: frame, with: response)
        case .failure(let error):
            let error = Self.parleyError(error)
            if error.code == .storageError || error.code == .internalError {
                logger.debug("a request failed", metadata: ["frame.type": "\(frame.type)", "error": "\(error)"])
                server.hooks.notify(.error(error))
            }
            respond(to: frame, with: error)
        }
    }

    static func parleyError(_ error: any Error) -> ParleyError {
        if let error = error as? ParleyError { return error }
        return ParleyError(code: .internalError, message: "the server could not complete the request", cause: error)
    }

    /// A request was handed to work that answers it later.
    func requestStarted(query: Bool) {
        machine.started(query: query)
    }

    /// A request started with ``requestStarted(query:)`` was answered: waiting frames go on.
    func requestAnswered(query: Bool) {
        machine.answered(query: query)
        proceed()
    }

    /// A session-changing request starts: later frames wait until ``resume()``.
    func sessionChangeStarted() {
        machine.sessionChangeStarted()
    }

    /// A session-changing request was answered: the frames that waited behind it go on.
    func resume() {
        machine.sessionChangeEnded()
        proceed()
    }

    /// Handles the waiting frames that may be handled now, then reads again if it may.
    func proceed() {
        while let action = machine.next() {
            perform(action)
        }
        // No flush here: every answer written schedules one, coalesced per event-loop tick.
        if readHeld, machine.mayRead, let context {
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
        negotiatedPresence = hello.capabilities.contains(WireProtocol.presenceCapability)
        negotiatedCommands = hello.capabilities.contains(WireProtocol.commandsCapability)
        negotiatedFiles = hello.capabilities.contains(WireProtocol.filesCapability)
        ok.capabilities =
            (negotiatedPresence ? [WireProtocol.presenceCapability] : [])
            + (negotiatedCommands ? [WireProtocol.commandsCapability] : [])
            + (negotiatedFiles ? [WireProtocol.filesCapability] : [])
            // history: listed when the client asks and the server keeps history (section 25).
            + (server.history != nil && hello.capabilities.contains(WireProtocol.historyCapability)
                ? [WireProtocol.historyCapability] : [])
        ok.agent = "parley-swift/\(ParleyServer.version)"
        ok.maxFrameSize = UInt32(clamping: configuration.maximumFrameSize)
        ok.heartbeatIntervalMs = configuration.heartbeatInterval.wireMilliseconds
        ok.idleTimeoutMs = configuration.idleTimeout.wireMilliseconds
        ok.serverUserID = UserID.server.rawValue
        ok.serverName = configuration.serverName
        machine.helloAccepted()
        logger.debug("handshake done", metadata: ["client.agent": "\(hello.agent)"])
        // Shown to the admin; bounded so a client cannot make the session list large.
        agent = Self.agents.intern(String(hello.agent.prefix(128)))
        write(Frame(type: FrameType.hello.response, requestID: frame.requestID, message: ok))
    }

    // MARK: Logging on and off

    /// The source address the logon throttle counts: the peer's IP without its port.
    var peerAddress: String {
        remoteAddress?.ipAddress ?? ""
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
            now: server.configuration.clock.date()
        )
        server.logger.debug("recorded a node", metadata: ["user.id": "\(user.userID)", "node.id": "\(node.nodeID)"])
        return recorded
    }

    /// Applies the one-session rule (docs/PROTOCOL.md section 9.2) to an authenticated logon,
    /// then records the node and answers; ends the session change.
    func claimSession(_ frame: Frame, _ granted: Authenticated, node: NodeDeclaration?) {
        let user = granted.info
        guard machine.state == .guest, let handle, let context else {
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
            logger.debug(
                "took over a session", metadata: ["user.id": "\(user.userID)", "takeover": "\(takeover)"])
            previous.execute { $0.replaced(because: takeover) }
        case .claimed:
            break
        }
        // Held from now on, so a close before the node is recorded releases it.
        machine.claimed(user.userID)
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
            case .success(let recorded) where machine.mayComplete(user.userID):
                var granted = granted
                granted.info = recorded
                completeLogOn(frame, granted)
            case .success where machine.isClosing:
                break
            case .success:
                // Taken over by yet another logon while the node was recorded.
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
        guard machine.loggedOn(user.userID) else { return }
        server.metrics.logonSuccesses.increment()
        if granted.resumed { server.metrics.logonsResumed.increment() }
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
        forEachFamily { $0.sessionStarted(in: session) }
        let described = description(of: user.userID, agent: agent)
        server.registry.describe(user.userID, for: sessionID, agent: agent)
        server.hooks.notify(.loggedOn(described))
    }

    /// What the admin and the hooks see of this connection's session of `user`. Reads only the
    /// handler's constants, so the registry asks for it from any thread (``SessionHandle``).
    func description(of user: UserID, agent: String) -> ServerSession {
        ServerSession(id: connectionID, user: user, address: remoteAddressText, connectedAt: connectedAt, agent: agent)
    }

    /// The peer's "IP:port", or "" when unknown. Made when asked for (rarely), not kept.
    var remoteAddressText: String { ListeningAddress.text(of: remoteAddress) }

    /// This connection, as the application's hooks see it.
    var connection: ServerConnection {
        ServerConnection(id: connectionID, address: remoteAddressText)
    }

    /// Leaves the registry and tells the families a logged-on session ended.
    func endSession() {
        guard let ended = machine.endSession() else { return }
        server.registry.release(ended.user, for: sessionID)
        logger.debug("logged off", metadata: ["user.id": "\(ended.user)"])
        if ended.wasLoggedOn {
            forEachFamily { $0.sessionEnded(ended.user, in: session) }
            server.hooks.notify(.loggedOff(ended.user, session: connectionID))
        }
    }

    /// Another connection logged on as this user and took this session over.
    func replaced(because takeover: SessionRegistry.Takeover) {
        switch machine.replaced() {
        case .none, .abandonLogOn:
            // A logon still recording its node must not complete; its answer says why.
            return
        case .closeReplaced:
            guard let context else { return }
            var event = Parley_V1_SessionReplacedEvent()
            switch takeover {
            case .newerSession:
                event.reason = "the same user logged on from another connection"
            case .sameNode:
                event.reason = "the same node logged on again from another connection; this session was stale"
            }
            writeFinal(
                [
                    Frame(type: .sessionReplaced, requestID: 0, message: event),
                    .error(ParleyError(code: .sessionReplaced, message: event.reason), requestID: 0, fatal: true),
                ],
                context: context
            )
        }
    }

    // MARK: Messages (from the committer)

    /// A SEND_MESSAGE of this session was committed (or failed).
    func messageStored(_ submission: MessageCommitter.Submission, _ outcome: MessageCommitter.Result) {
        Self.messages.stored(submission, outcome, in: session)
    }

    /// A message for this session was just committed.
    func liveDelivery(_ live: MessageCommitter.LiveDelivery) {
        Self.messages.liveDelivery(live, in: session)
    }

    /// A message this session's user sent, wanting a receipt, was acknowledged.
    func deliveryReceipt(_ ack: AcknowledgedMessage) {
        Self.messages.deliveryReceipt(ack, in: session)
    }

    /// The presence of a user in this session's contact list changed.
    func presenceChanged(_ change: PresenceHub.Change) {
        ContactsFamily.presenceChanged(change, in: session)
    }

    /// A contact was just added by this session: its current presence, whatever the sequence.
    func presenceOfNewContact(_ change: PresenceHub.Change) {
        ContactsFamily.presenceOfNewContact(change, in: session)
    }

    /// The presence this session's logon asked for instead of the stored choice.
    func requestPresence(_ choice: PresenceChoice?) {
        ContactsFamily.requestPresence(choice, in: session)
    }

    // MARK: Admin

    /// An admin closed this connection: tells the client why (a fatal KICKED, after which
    /// clients do not reconnect by themselves), then closes.
    func kick(reason: String) {
        logger.debug("kicked by an admin", metadata: ["reason": "\(reason)"])
        fail(ParleyError(code: .kicked, message: reason))
    }

    // MARK: Shutdown

    /// Tells the client the server is going away, then closes.
    func serverShuttingDown(reason: String) {
        guard let context, machine.close() else { return }
        var event = Parley_V1_ServerShutdownEvent()
        event.reason = reason
        writeFinal([Frame(type: .serverShutdown, requestID: 0, message: event)], context: context)
    }
}

@available(*, unavailable)
extension ServerConnectionHandler: Sendable {}

/// A scheduled task kept behind one reference.
private final class ScheduledBox {
    let scheduled: Scheduled<Void>

    init(_ scheduled: Scheduled<Void>) {
        self.scheduled = scheduled
    }
}
