package import ParleyCore
import ParleySQLite

package import struct Foundation.Date

/// A message for ``NodeRegistry/enqueue(_:)``: one the node could not send yet because no route
/// to some of its recipients exists.
package struct OutboxMessage: Sendable, Hashable {
    /// Chosen by the sender; (sender, message ID) identifies the message in the outbox.
    package var messageID: MessageID
    package var sender: UserID
    /// Everyone the message is addressed to, in order. Each distinct one stays pending until
    /// ``NodeRegistry/markDelivered(messageID:sender:recipient:route:at:)`` takes it off.
    package var recipients: [UserID]
    package var isText: Bool
    package var body: [UInt8]
    /// When the sender created the message (its "sent at" when it finally leaves).
    package var createdAt: Date

    package init(
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
