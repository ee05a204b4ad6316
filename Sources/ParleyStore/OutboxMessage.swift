public import ParleyCore

public import struct Foundation.Date

/// A message for ``NodeRegistry/enqueue(_:)``: one the node could not send yet because no route
/// to some of its recipients exists.
public struct OutboxMessage: Sendable, Hashable {
    /// Chosen by the sender; (sender, message ID) identifies the message in the outbox.
    public var messageID: MessageID
    public var sender: UserID
    /// Everyone the message is addressed to, in order. Each distinct one stays pending until
    /// ``NodeRegistry/markDelivered(messageID:sender:recipient:route:at:)`` takes it off.
    public var recipients: [UserID]
    public var isText: Bool
    public var body: [UInt8]
    /// When the sender created the message (its "sent at" when it finally leaves).
    public var createdAt: Date

    public init(
        messageID: MessageID,
        sender: UserID,
        recipients: [UserID],
        isText: Bool,
        body: [UInt8],
        createdAt: Date
    ) {
        self.messageID = messageID
        self.sender = sender
        self.recipients = recipients
        self.isText = isText
        self.body = body
        self.createdAt = createdAt
    }
}
