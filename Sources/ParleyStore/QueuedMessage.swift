public import ParleyCore

public import struct Foundation.Date

/// One message waiting in the outbox for one recipient, as ``NodeRegistry/queuedMessages()``
/// lists it: a message to several users that waits for two of them is two of these.
public struct QueuedMessage: Sendable, Hashable {
    /// Whom it waits for: a user (the outbox) or a node (the node outbox).
    public enum Recipient: Sendable, Hashable {
        case user(UserID)
        case node(String)
    }

    public var messageID: MessageID
    public var sender: UserID
    public var recipient: Recipient
    public var isText: Bool
    public var body: [UInt8]
    /// When the message was sent (queued); it expires a while after.
    public var createdAt: Date

    public init(
        messageID: MessageID,
        sender: UserID,
        recipient: Recipient,
        isText: Bool,
        body: [UInt8],
        createdAt: Date
    ) {
        self.messageID = messageID
        self.sender = sender
        self.recipient = recipient
        self.isText = isText
        self.body = body
        self.createdAt = createdAt
    }
}
