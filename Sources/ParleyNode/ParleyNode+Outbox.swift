public import Foundation
public import ParleyCore
import ParleyLink
import ParleyNodeStore

extension ParleyNode {
    /// A message waiting in the outbox for one recipient (``ParleyNode/queuedMessages()``).
    public struct QueuedMessage: Sendable, Hashable {
        public var messageID: MessageID
        public var recipient: Recipient
        public var body: MessageBody
        /// When it was sent (and queued).
        public var createdAt: Date
        /// When it leaves the outbox undelivered (``Configuration/outboxExpiry`` after
        /// ``createdAt``), with a ``Event/queuedMessageExpired(_:to:)`` event.
        public var expiresAt: Date

        public init(messageID: MessageID, recipient: Recipient, body: MessageBody, createdAt: Date, expiresAt: Date) {
            self.messageID = messageID
            self.recipient = recipient
            self.body = body
            self.createdAt = createdAt
            self.expiresAt = expiresAt
        }
    }

    /// The messages waiting in this node's outbox, once per recipient still to reach, oldest
    /// first.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/storageError``
    ///   when the outbox cannot be read.
    public func queuedMessages() async throws(ParleyError) -> [QueuedMessage] {
        let expiry = configuration.outboxExpiry
        return try await registry.run { registry throws(ParleyError) in
            try Self.queuedMessages(in: registry, expiry: expiry)
        }
    }

    /// Takes a queued message out of the outbox, for every recipient still waiting for it; a
    /// message already on its way (being sent right now) may still arrive.
    ///
    /// - Returns: Whether the message was queued.
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/storageError``
    ///   when the outbox cannot be changed.
    @discardableResult
    public func cancelQueued(_ messageID: MessageID) async throws(ParleyError) -> Bool {
        try await registry.run { registry throws(ParleyError) in try registry.cancelQueued(messageID) > 0 }
    }

    /// The messages waiting in the outbox of the node kept in `dataDirectory`, whether that node
    /// runs (in any process) or not.
    ///
    /// - Parameters:
    ///   - dataDirectory: The node's data directory.
    ///   - expiry: The node's ``Configuration/outboxExpiry``, for ``QueuedMessage/expiresAt``.
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/storageError``
    ///   when `dataDirectory` holds no node registry, or it cannot be read.
    public static func queuedMessages(
        dataDirectory: String,
        expiry: Duration = Configuration.defaultOutboxExpiry
    ) throws(ParleyError) -> [QueuedMessage] {
        try queuedMessages(in: existingRegistry(dataDirectory: dataDirectory), expiry: expiry)
    }

    /// Takes a queued message out of the outbox of the node kept in `dataDirectory`, whether that
    /// node runs (in any process) or not; see ``cancelQueued(_:)``.
    ///
    /// - Returns: Whether the message was queued.
    @discardableResult
    public static func cancelQueued(_ messageID: MessageID, dataDirectory: String) throws(ParleyError) -> Bool {
        try existingRegistry(dataDirectory: dataDirectory).cancelQueued(messageID) > 0
    }

    /// The registry of an existing data directory (never a new one made by mistake).
    static func existingRegistry(dataDirectory: String) throws(ParleyError) -> NodeRegistry {
        let path = URL(fileURLWithPath: dataDirectory, isDirectory: true)
            .appendingPathComponent(NodeRegistry.fileName).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw ParleyError(
                code: .storageError, message: "\(dataDirectory) holds no node data (no \(NodeRegistry.fileName))")
        }
        return try NodeRegistry(dataDirectory: dataDirectory)
    }

    private static func queuedMessages(in registry: NodeRegistry, expiry: Duration) throws(ParleyError)
        -> [QueuedMessage]
    {
        try registry.queuedMessages().map { Self.queuedMessage($0, expiry: expiry) }
    }

    private static func queuedMessage(_ queued: ParleyNodeStore.QueuedMessage, expiry: Duration) -> QueuedMessage {
        let recipient: Recipient
        switch queued.recipient {
        case .user(let user): recipient = .user(user)
        case .node(let node): recipient = .node(node)
        }
        return QueuedMessage(
            messageID: queued.messageID,
            recipient: recipient,
            body: MessageBody(isText: queued.isText, bytes: queued.body),
            createdAt: queued.createdAt,
            expiresAt: queued.createdAt.addingTimeInterval(expiry.timeInterval)
        )
    }

    /// Removes the messages that waited longer than ``Configuration/outboxExpiry``, with a
    /// ``Event/queuedMessageExpired(_:to:)`` event for each recipient that was still waiting.
    func expireQueued() async {
        let cutoff = Date().addingTimeInterval(-configuration.outboxExpiry.timeInterval)
        do {
            let expired = try await registry.run { registry throws(ParleyError) in
                try registry.expireQueued(createdBefore: cutoff)
            }
            for queued in expired {
                let message = Self.queuedMessage(queued, expiry: configuration.outboxExpiry)
                logger.debug(
                    "a queued message expired undelivered",
                    metadata: ["message.id": "\(message.messageID)", "recipient": "\(message.recipient)"])
                eventQueue.offer(.queuedMessageExpired(message.messageID, to: message.recipient))
            }
        } catch {
            logger.warning("cannot expire queued messages", metadata: ["error": "\(error)"])
        }
    }
}
