public import ParleyCore

/// Something the server told the client, or a change of the connection.
public enum ParleyClientEvent: Sendable, Hashable {
    /// A message for the logged-on user. The client acknowledges it to the server when the
    /// application takes it from ``ParleyClient/events``, so a message is never lost between
    /// the socket and the application; redeliveries are dropped by message ID.
    case message(Message)
    /// A recipient acknowledged a message sent with `wantReceipt`.
    case deliveryReceipt(DeliveryReceipt)
    case connectionStateChanged(ParleyClient.ConnectionState)
    /// The server announced it is shutting down; the client reconnects when it is back.
    case serverShuttingDown(reason: String)
    /// The same user logged on elsewhere and the server closed this session.
    case sessionReplaced(reason: String)
    /// Contacts' presence: the snapshot right after each logon (with the contact list), then
    /// every change (docs/PROTOCOL.md section 23). Only from a server that supports presence.
    case presence(PresenceUpdate)
    /// A command for this user (docs/PROTOCOL.md section 24), from another user or the server
    /// application: every command received, whether a handler registered with
    /// ``ParleyClient/handleCommands(named:_:)`` answers it (it has been started when the event
    /// comes), none does (a request was answered NO_HANDLER), or it is fire-and-forget.
    /// Informational: replies come from handlers only.
    case command(Command)
    /// A file (or stream) another user sent is waiting on the server for this user
    /// (docs/PROTOCOL.md section 26): accept it with ``ParleyClient/receiveFile(_:into:progress:)``
    /// or decline it with ``ParleyClient/declineFile(_:reason:)``. Offered again after every
    /// logon until one of them is done, so a receiver that restarted resumes where it was.
    case transferOffered(FileOffer)
    /// One of this user's transfers ended: the recipient has it (`completed`), declined it, a
    /// side cancelled it, its hash did not match, it expired or an admin deleted it.
    case transferStatus(TransferStatus)
}

/// What a PRESENCE event told: the presence of some contacts, or of all of them after logon.
public struct PresenceUpdate: Sendable, Hashable {
    /// True for the batch right after logon: the contact list and every contact's presence.
    public var isSnapshot: Bool
    /// The contact list as fetched at logon; nil in a change.
    public var contacts: [Contact]?
    /// The presence of each contact the event is about.
    public var presences: [UserID: Presence]

    public init(isSnapshot: Bool, contacts: [Contact]?, presences: [UserID: Presence]) {
        self.isSnapshot = isSnapshot
        self.contacts = contacts
        self.presences = presences
    }
}

extension ParleyClient {
    public enum ConnectionState: Sendable, Hashable {
        case connecting
        /// Connected and greeted; not logged on.
        case connected
        case loggedOn(UserID)
        /// The connection is gone; the client reconnects unless it was stopped, replaced by
        /// another logon (SESSION_REPLACED) or kicked by an admin (the error's code is
        /// ``/ParleyCore/ParleyError/Code/kicked`` and its message the admin's reason): then
        /// ``ParleyClient/ParleyClient/ConnectionState/stopped`` follows.
        case disconnected(ParleyError?)
        /// ``ParleyClient/run()`` has returned.
        case stopped
    }
}

/// The events of one client, as an `AsyncSequence`. Iterate it from one task.
///
/// Its buffer is bounded in practice by the server's delivery window: the server pushes at
/// most that many unacknowledged messages, and messages are acknowledged as they are taken.
/// Received commands wait at most 1,024 at a time (later ones still reach their handlers, but
/// are not shown until the reader catches up).
public struct ParleyClientEvents: AsyncSequence, Sendable {
    public typealias Element = ParleyClientEvent

    let stream: AsyncStream<ParleyClientEvent>
    let client: ParleyClient
    /// False for ``ParleyClient/manuallyAcknowledgedEvents``.
    var acknowledgesMessages = true

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<ParleyClientEvent>.AsyncIterator
        let client: ParleyClient
        let acknowledgesMessages: Bool

        public mutating func next() async -> ParleyClientEvent? {
            let event = await base.next()
            if acknowledgesMessages, case .message(let message)? = event {
                client.acknowledge(message)
            }
            if case .command? = event { client.unreadCommandEvents.subtract(1, ordering: .relaxed) }
            return event
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), client: client, acknowledgesMessages: acknowledgesMessages)
    }
}
