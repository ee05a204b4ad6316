public import Foundation
public import ParleyCore
import Synchronization

/// Server-side application logic embedded in a ``ParleyServer``: the messages users send to
/// ``/ParleyCore/UserID/server``, and hooks for what happens on the server.
///
/// Every requirement has a default that does nothing (or allows), so an application implements
/// only what it needs. The server never calls the application on an event loop:
///
/// - Notifications (``serverStarted(_:)`` to ``errorOccurred(_:server:)``) arrive one at a time,
///   in the order they happened, from one task of the server's ``ParleyServer/run()``. At most
///   4096 wait for a slow application; further ones are dropped (and logged).
/// - ``receive(_:from:)`` gets the messages sent to the server's address, one at a time, in
///   arrival order, from another task; a slow application delays only other messages to it.
/// - Decisions (``shouldAddContact(_:to:server:)`` when ``vetoesContacts`` is true,
///   ``inspect(_:server:)`` when ``inspectsMessages`` is true) run concurrently, each in its own
///   task, and each waits at most ``ParleyServer/ParleyServer/Configuration/applicationDecisionTimeout``
///   (2 s by default). A decision that comes later counts as a refusal: the contact is refused
///   (CONTACT_REFUSED) or the message rejected (MESSAGE_REJECTED), and the late call is
///   cancelled. While 1024 decisions are pending, further requests are refused at once.
///
/// A server whose application does not inspect messages handles SEND_MESSAGE exactly as one
/// without an application: no hop, no allocation, no wait.
public protocol ParleyServerApplication: Sendable {
    /// A user sent `message` to the server's address. Use `server` to answer (``ParleyServer/send(_:to:id:)``).
    func receive(_ message: Message, from server: ParleyServer) async

    /// The server is listening (``ParleyServer/listeningAddress`` is known).
    func serverStarted(_ server: ParleyServer) async
    /// The server began shutting down: connections are being told and closed.
    func serverStopping(_ server: ParleyServer) async
    /// A connection was accepted (before its handshake).
    func connectionOpened(_ connection: ServerConnection, server: ParleyServer) async
    /// A connection closed.
    func connectionClosed(_ connection: ServerConnection, server: ParleyServer) async
    /// A user logged on (after the answer was sent); also right after a registration.
    func userLoggedOn(_ session: ServerSession, server: ParleyServer) async
    /// A logged-on session ended: logged off, closed, kicked or taken over.
    func userLoggedOff(_ user: UserID, session: UInt64, server: ParleyServer) async
    /// A user registered.
    func userRegistered(_ user: UserInfo, server: ParleyServer) async
    /// A user changed their directory fields (UPDATE_USER_INFO).
    func userInfoChanged(_ user: UserInfo, server: ParleyServer) async
    /// Something failed on the server that no client can fix: storage or internal errors
    /// answered to a request, stored messages that could not be loaded.
    func errorOccurred(_ error: ParleyError, server: ParleyServer) async

    /// Whether the server asks ``shouldAddContact(_:to:server:)`` before every ADD_CONTACT.
    /// Read once when the server starts; false by default.
    var vetoesContacts: Bool { get }
    /// Whether `owner` may add `contact` to their contact list. False answers CONTACT_REFUSED.
    func shouldAddContact(_ contact: UserID, to owner: UserID, server: ParleyServer) async -> Bool

    /// Whether the server hands every SEND_MESSAGE to ``inspect(_:server:)`` before it is
    /// stored or delivered. Read once when the server starts; false by default, and then the
    /// message path does not change at all.
    var inspectsMessages: Bool { get }
    /// Decides what becomes of a message a user sent, before it is stored or delivered. The
    /// messages of one connection are inspected one after the other, in order.
    func inspect(_ message: Message, server: ParleyServer) async -> MessageDecision

    /// Whether the server asks ``shouldAcceptTransfer(_:server:)`` before every new file
    /// transfer (docs/PROTOCOL.md section 26). Read once when the server starts; false by default.
    var vetoesTransfers: Bool { get }
    /// Whether the server takes a file (or stream) a user starts to send. False answers
    /// TRANSFER_REFUSED; asked once per transfer, not again when the sender resumes it.
    func shouldAcceptTransfer(_ request: TransferRequest, server: ParleyServer) async -> Bool
}

extension ParleyServerApplication {
    /// Does nothing.
    public func receive(_ message: Message, from server: ParleyServer) async {}
    /// Does nothing.
    public func serverStarted(_ server: ParleyServer) async {}
    /// Does nothing.
    public func serverStopping(_ server: ParleyServer) async {}
    /// Does nothing.
    public func connectionOpened(_ connection: ServerConnection, server: ParleyServer) async {}
    /// Does nothing.
    public func connectionClosed(_ connection: ServerConnection, server: ParleyServer) async {}
    /// Does nothing.
    public func userLoggedOn(_ session: ServerSession, server: ParleyServer) async {}
    /// Does nothing.
    public func userLoggedOff(_ user: UserID, session: UInt64, server: ParleyServer) async {}
    /// Does nothing.
    public func userRegistered(_ user: UserInfo, server: ParleyServer) async {}
    /// Does nothing.
    public func userInfoChanged(_ user: UserInfo, server: ParleyServer) async {}
    /// Does nothing.
    public func errorOccurred(_ error: ParleyError, server: ParleyServer) async {}
    /// False: contacts are added without asking.
    public var vetoesContacts: Bool { false }
    /// Allows every contact.
    public func shouldAddContact(_ contact: UserID, to owner: UserID, server: ParleyServer) async -> Bool { true }
    /// False: messages are not inspected.
    public var inspectsMessages: Bool { false }
    /// Delivers the message unchanged.
    public func inspect(_ message: Message, server: ParleyServer) async -> MessageDecision { .deliver }
    /// False: transfers are taken without asking.
    public var vetoesTransfers: Bool { false }
    /// Accepts every transfer.
    public func shouldAcceptTransfer(_ request: TransferRequest, server: ParleyServer) async -> Bool { true }
}

/// A file transfer a user starts, as the server application sees it
/// (``ParleyServerApplication/shouldAcceptTransfer(_:server:)``).
public struct TransferRequest: Sendable, Hashable {
    public var id: TransferID
    public var sender: UserID
    public var recipient: UserID
    /// The file's name (already checked against docs/PROTOCOL.md section 26.6).
    public var name: String
    /// The declared length; nil for a stream, whose length is known only at its end.
    public var size: UInt64?

    public init(id: TransferID, sender: UserID, recipient: UserID, name: String, size: UInt64?) {
        self.id = id
        self.sender = sender
        self.recipient = recipient
        self.name = name
        self.size = size
    }
}

/// What becomes of a message the application inspected (``ParleyServerApplication/inspect(_:server:)``).
public enum MessageDecision: Sendable, Hashable {
    /// Store and deliver it as sent.
    case deliver
    /// Store and deliver it with this text instead (TEXT messages only; a BINARY message is
    /// delivered unchanged). A text over the server's maximum frame size rejects the message.
    case replaceText(String)
    /// Store nothing, deliver nothing: the SEND_MESSAGE is answered with an ERROR carrying
    /// `code` (MESSAGE_REJECTED, 34, unless the application picks another) and `reason`.
    case reject(code: ParleyError.Code = .messageRejected, reason: String)
}

/// A connection as the application and the admin see it.
public struct ServerConnection: Sendable, Hashable, Codable {
    /// The connection's number, unique while the server runs (also its session's ID).
    public var id: UInt64
    /// The peer's address ("IP:port"), or "" when unknown.
    public var address: String

    /// Makes a connection description.
    public init(id: UInt64, address: String) {
        self.id = id
        self.address = address
    }
}

/// A logged-on session as the application and the admin see it.
public struct ServerSession: Sendable, Hashable, Codable {
    /// The session's number: its connection's ``ServerConnection/id``.
    public var id: UInt64
    /// Who is logged on.
    public var user: UserID
    /// The peer's address ("IP:port"), or "" when unknown.
    public var address: String
    /// When the connection was accepted.
    public var connectedAt: Date
    /// The client's agent string from its HELLO (e.g. "parley-swift/0.1.0"), or "".
    public var agent: String

    /// Makes a session description.
    public init(id: UInt64, user: UserID, address: String, connectedAt: Date, agent: String) {
        self.id = id
        self.user = user
        self.address = address
        self.connectedAt = connectedAt
        self.agent = agent
    }
}

/// The bounded queue between connection handlers and the application.
final class ApplicationInbox: Sendable {
    let stream: AsyncStream<Message>
    private let continuation: AsyncStream<Message>.Continuation
    let isAvailable: Bool

    /// - Parameter capacity: messages waiting for the application at most; beyond that the
    ///   sender gets a failure for the server recipient instead of an unbounded queue.
    init(isAvailable: Bool, capacity: Int) {
        (stream, continuation) = AsyncStream.makeStream(of: Message.self, bufferingPolicy: .bufferingOldest(capacity))
        self.isAvailable = isAvailable
    }

    /// Hands a message to the application; the per-recipient result for the server address.
    func offer(_ message: Message) -> DeliveryResult.Status {
        guard isAvailable else {
            return .failed(
                ParleyError(code: .serverApplicationUnavailable, message: "no server application takes messages here")
            )
        }
        switch continuation.yield(message) {
        case .enqueued:
            return .acceptedByServer
        case .dropped, .terminated:
            return .failed(
                ParleyError(
                    code: .serverApplicationUnavailable, message: "the server application is overloaded or stopped")
            )
        @unknown default:
            return .failed(
                ParleyError(code: .serverApplicationUnavailable, message: "the server application is unavailable"))
        }
    }

    func finish() { continuation.finish() }
}

/// Carries the server's notifications and questions to the application, off the event loops.
///
/// Notifications go through one bounded queue, worked off in order by one task. Decisions are
/// jobs on another queue; each runs in its own child task with a deadline, and the asker gets
/// its answer through a completion called exactly once (from any thread).
final class ApplicationHooks: Sendable {
    enum Notification: Sendable {
        case started
        case stopping
        case connectionOpened(ServerConnection)
        case connectionClosed(ServerConnection)
        case loggedOn(ServerSession)
        case loggedOff(UserID, session: UInt64)
        case registered(UserInfo)
        case infoChanged(UserInfo)
        case error(ParleyError)
    }

    typealias Job = @Sendable (any ParleyServerApplication, ParleyServer) async -> Void

    let application: (any ParleyServerApplication)?
    /// Cached from the application when the server starts: the hot paths read a constant.
    let inspectsMessages: Bool
    let vetoesContacts: Bool
    let vetoesTransfers: Bool
    let timeout: Duration
    private let notifications: AsyncStream<Notification>
    private let notificationInput: AsyncStream<Notification>.Continuation
    private let jobs: AsyncStream<Job>
    private let jobInput: AsyncStream<Job>.Continuation
    /// Decisions asked and not yet run to their end (the late ones included).
    private let pending = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)

    static let notificationCapacity = 4096
    static let decisionCapacity = 1024

    init(application: (any ParleyServerApplication)?, timeout: Duration = .seconds(2)) {
        self.application = application
        self.inspectsMessages = application?.inspectsMessages ?? false
        self.vetoesContacts = application?.vetoesContacts ?? false
        self.vetoesTransfers = application?.vetoesTransfers ?? false
        self.timeout = timeout
        (notifications, notificationInput) = AsyncStream.makeStream(
            bufferingPolicy: .bufferingOldest(Self.notificationCapacity))
        (jobs, jobInput) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(Self.decisionCapacity))
    }

    /// Queues a notification for the application (nothing without one).
    func notify(_ notification: Notification) {
        guard application != nil else { return }
        if case .dropped = notificationInput.yield(notification) {
            _ = dropped.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// Notifications the application was too slow to take.
    var droppedNotifications: Int { dropped.load(ordering: .relaxed) }

    /// Asks the application a question with a deadline.
    ///
    /// - Parameters:
    ///   - late: the answer when the application does not decide within ``timeout``.
    ///   - unavailable: the answer when there is no application, too many decisions are pending,
    ///     or the server is stopping.
    ///   - completion: called exactly once with the answer, on whatever thread decided.
    func decide<T: Sendable>(
        late: T,
        unavailable: T,
        _ ask: @escaping @Sendable (any ParleyServerApplication, ParleyServer) async -> T,
        completion: @escaping @Sendable (T) -> Void
    ) {
        guard application != nil,
            pending.wrappingAdd(1, ordering: .relaxed).newValue <= Self.decisionCapacity
        else {
            if application != nil { _ = pending.wrappingSubtract(1, ordering: .relaxed) }
            completion(unavailable)
            return
        }
        let timeout = self.timeout
        let job: Job = { [self] application, server in
            defer { _ = self.pending.wrappingSubtract(1, ordering: .relaxed) }
            await withTaskGroup(of: T?.self) { group in
                group.addTask { await ask(application, server) }
                group.addTask {
                    // Cancelled once the application answered: then this child's nil is ignored.
                    try? await Task.sleep(for: timeout)
                    return nil
                }
                let first = await group.next() ?? nil
                completion(first ?? late)
                // The application's call is told to stop; the group waits for it to return.
                group.cancelAll()
            }
        }
        switch jobInput.yield(job) {
        case .enqueued:
            break
        case .dropped, .terminated:
            _ = pending.wrappingSubtract(1, ordering: .relaxed)
            completion(unavailable)
        @unknown default:
            _ = pending.wrappingSubtract(1, ordering: .relaxed)
            completion(unavailable)
        }
    }

    /// Delivers the notifications in order until ``finish()``; run by ``ParleyServer/run()``.
    func deliverNotifications(to server: ParleyServer) async {
        guard let application else { return }
        for await notification in notifications {
            switch notification {
            case .started: await application.serverStarted(server)
            case .stopping: await application.serverStopping(server)
            case .connectionOpened(let connection): await application.connectionOpened(connection, server: server)
            case .connectionClosed(let connection): await application.connectionClosed(connection, server: server)
            case .loggedOn(let session): await application.userLoggedOn(session, server: server)
            case .loggedOff(let user, let session):
                await application.userLoggedOff(user, session: session, server: server)
            case .registered(let user): await application.userRegistered(user, server: server)
            case .infoChanged(let user): await application.userInfoChanged(user, server: server)
            case .error(let error): await application.errorOccurred(error, server: server)
            }
        }
    }

    /// Runs the decision jobs, each in its own child task, until ``finish()``.
    func runDecisions(for server: ParleyServer) async {
        guard let application else { return }
        await withDiscardingTaskGroup { group in
            for await job in jobs {
                group.addTask { await job(application, server) }
            }
        }
    }

    /// Ends both queues: what is queued is still worked off, then the tasks return.
    func finish() {
        notificationInput.finish()
        jobInput.finish()
    }
}
