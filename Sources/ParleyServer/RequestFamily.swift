import Logging
import NIOCore
import ParleyCore
import ParleyWire

/// A group of related requests (accounts, directory, messages...) served on every connection.
///
/// The session core (``ServerConnectionHandler`` carrying out ``SessionStateMachine``) does the
/// handshake, the one-session rule, flow control and closing; it routes each request frame to
/// the one family that declared its type. One instance of each family serves every
/// connection; what a family keeps of a connection (the messages family's delivery window, the
/// contacts family's presence ordering) is stored in the connection and used on its event
/// loop. It answers, pushes and runs blocking work through the ``SessionContext`` it is handed
/// with each call.
///
/// A new family (contacts, presence, commands, history, transfers) is a type conforming to this
/// protocol, added to `ServerConnectionHandler`'s list of families; the session core does not
/// change.
protocol RequestFamily: AnyObject {
    /// The request frame types this family handles. No two families of a connection may
    /// declare the same type.
    var requestTypes: [FrameType] { get }

    /// Handles a request of one of ``requestTypes``. A thrown error answers the request with
    /// an ERROR frame; the connection stays open.
    func handle(_ frame: Frame, in session: SessionContext) throws(ParleyError)

    /// The connection logged on as `session.identity`'s user (after the logon was answered).
    func sessionStarted(in session: SessionContext)

    /// The logged-on session of `user` ended: logged off, taken over or closed.
    func sessionEnded(_ user: UserID, in session: SessionContext)

    /// The connection's outbound queue went over (false) or under (true) its limit.
    func writabilityChanged(_ writable: Bool, in session: SessionContext)
}

extension RequestFamily {
    func sessionStarted(in session: SessionContext) {}
    func sessionEnded(_ user: UserID, in session: SessionContext) {}
    func writabilityChanged(_ writable: Bool, in session: SessionContext) {}
}

/// Which family of a connection handles which frame type: a table indexed by frame type.
struct RequestRouter {
    private var table: [Int8] = []

    init(_ families: [any RequestFamily]) {
        precondition(families.count < Int(Int8.max), "too many request families")
        for (index, family) in families.enumerated() {
            for type in family.requestTypes {
                precondition(!type.isResponse && type != .hello, "\(type) is not a request a family can handle")
                let slot = Int(type.rawValue)
                if slot >= table.count { table.append(contentsOf: repeatElement(-1, count: slot + 1 - table.count)) }
                precondition(table[slot] < 0, "two request families handle \(type)")
                table[slot] = Int8(index)
            }
        }
    }

    /// The index of the family that handles `type`, or nil when none does.
    func family(for type: FrameType) -> Int? {
        let slot = Int(type.rawValue)
        guard slot < table.count, table[slot] >= 0 else { return nil }
        return Int(table[slot])
    }
}

/// What a request family may do on its connection, handed to it with each call.
///
/// Used on the connection's event loop only. Families do not store it (the connection owns the
/// families); closures that run later on the loop may capture it, which keeps the connection
/// alive until they ran. From other threads (the committer) a family comes back through
/// ``handle``.
struct SessionContext {
    let connection: ServerConnectionHandler

    /// Who the connection speaks for now.
    var identity: SessionIdentity { connection.machine.identity }

    /// The server's shared context: configuration, store, registry, committer, metrics.
    var server: ServerContext { connection.server }

    var logger: Logger { connection.logger }

    /// Where the connection can be reached from other threads (the committer, the registry).
    var handle: SessionHandle? { connection.handle }

    /// The session's identity (its handle's ``SessionHandle/id``), known whether or not the
    /// connection is still attached to its link.
    var sessionID: ObjectIdentifier { connection.sessionID }

    /// The connection's event loop, while it is attached to its link.
    var eventLoop: (any EventLoop)? { connection.context?.eventLoop }

    /// Runs `body` on the connection's delivery state (``MessagesFamily``), in place.
    func withDelivery<Result>(_ body: (inout DeliveryStateMachine) -> Result) -> Result {
        body(&connection.delivery)
    }

    /// The contacts family's state of this connection (``ContactsFamily``), nil while it keeps
    /// none.
    var presenceWatch: PresenceWatch? {
        get { connection.presenceWatch }
        nonmutating set { connection.presenceWatch = newValue }
    }

    /// Whether HELLO negotiated the `presence` capability (PRESENCE events are wanted).
    var negotiatedPresence: Bool { connection.negotiatedPresence }

    /// Whether the connection's outbound queue is under its limit.
    var isWritable: Bool { connection.context?.channel.isWritable ?? true }

    /// The source address the logon throttle counts: the peer's IP without its port.
    var peerAddress: String { connection.peerAddress }

    /// The logged-on user, or `notLoggedOn`.
    func requireUser() throws(ParleyError) -> UserID {
        guard let user = identity.user else {
            throw ParleyError(code: .notLoggedOn, message: "log on or register first")
        }
        return user
    }

    /// Fails with `alreadyLoggedOn` unless the connection is a guest.
    func requireGuest() throws(ParleyError) {
        if let user = identity.user {
            throw ParleyError(code: .alreadyLoggedOn, message: "this connection is logged on as \(user); log off first")
        }
    }

    /// Answers `request` (unless it asked for no answer, request ID 0).
    func respond(to request: Frame, with meta: some WireMessage, payload: ByteBuffer = ByteBuffer()) {
        connection.respond(to: request, with: meta, payload: payload)
    }

    /// Answers `request` with an ERROR frame.
    func respond(to request: Frame, with error: ParleyError) {
        connection.respond(to: request, with: error)
    }

    /// Writes a frame the server sends on its own (a push: MESSAGE, DELIVERY_RECEIPT...).
    func push(_ frame: Frame) {
        connection.write(frame)
    }

    /// Answers `request` with a meta section that `meta` writes straight into the answer's
    /// bytes (``/ParleyWire/HotMeta``); nothing for a request ID of 0.
    func respond(to request: Frame, metaCapacity: Int, meta: (inout ByteBuffer) -> Void) {
        guard request.requestID != 0 else { return }
        connection.write(
            type: request.type.response, requestID: request.requestID, metaCapacity: metaCapacity, meta: meta)
    }

    /// Pushes an event (request ID 0) whose meta section `meta` writes straight into its bytes.
    func push(type: FrameType, payload: ByteBuffer, metaCapacity: Int, meta: (inout ByteBuffer) -> Void) {
        connection.write(type: type, requestID: 0, payload: payload, metaCapacity: metaCapacity, meta: meta)
    }

    /// Sends a fatal error and closes the connection.
    func fail(_ error: ParleyError) {
        connection.fail(error)
    }

    /// Runs a read-only request off the loop and answers it; other requests go on meanwhile.
    func query<M: WireMessage>(_ frame: Frame, _ work: @escaping @Sendable (ServerContext) throws(ParleyError) -> M) {
        connection.query(frame, work)
    }

    /// Runs a session-changing request off the loop; later frames wait until it is answered.
    func serialized<M: WireMessage>(
        _ frame: Frame,
        _ work: @escaping @Sendable (ServerContext) throws(ParleyError) -> M
    ) {
        connection.serialized(frame, work)
    }

    /// A request was handed to work that answers it later (counted against the connection's
    /// unanswered requests). Call ``requestAnswered(query:)`` when it is answered.
    func requestStarted(query: Bool) {
        connection.requestStarted(query: query)
    }

    /// A request started with ``requestStarted(query:)`` was answered: waiting frames go on.
    func requestAnswered(query: Bool) {
        connection.requestAnswered(query: query)
    }

    /// A session-changing request (one that ends in ``claimSession(_:_:node:)``,
    /// ``sessionChangeEnded()`` or ``endSession()``) starts: later frames wait.
    func sessionChangeStarted() {
        connection.sessionChangeStarted()
    }

    /// The session-changing request was answered: the frames that waited behind it go on.
    func sessionChangeEnded() {
        connection.resume()
    }

    /// Applies the one-session rule to an authenticated logon, records its node and answers
    /// it; ends the session change.
    func claimSession(_ frame: Frame, _ granted: Authenticated, node: NodeDeclaration?) {
        connection.claimSession(frame, granted, node: node)
    }

    /// Leaves the registry (log off); the families are told the session ended.
    func endSession() {
        connection.endSession()
    }

    /// Runs `body` on the connection's loop after `delay`, unless the connection is gone.
    func schedule(in delay: TimeAmount, _ body: @escaping () -> Void) {
        guard let context = connection.context else { return }
        context.eventLoop.assumeIsolated().scheduleTask(in: delay, body)
    }

    /// Runs `work` on the blocking pool; the result comes back on the connection's loop, where
    /// `completion` runs unless the connection is gone.
    func blocking<T: Sendable>(
        _ work: @escaping @Sendable () throws(ParleyError) -> T,
        then completion: @escaping (Result<T, any Error>) -> Void
    ) {
        guard let context = connection.context else { return }
        server.blocking(on: context.eventLoop, work).assumeIsolated().whenComplete(completion)
    }
}
