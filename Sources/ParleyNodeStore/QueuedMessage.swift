package import ParleyCore
import ParleySQLite

package import struct Foundation.Date

/// One message waiting in the outbox for one recipient, as ``NodeRegistry/queuedMessages()``
/// lists it: a message to several users that waits for two of them is two of these.
package struct QueuedMessage: Sendable, Hashable {
    /// Whom it waits for: a user (the outbox) or a node (the node outbox).
    package enum Recipient: Sendable, Hashable {
        case user(UserID)
        case node(NodeID)
    }

    package var messageID: MessageID
    package var sender: UserID
    package var recipient: Recipient
    package var isText: Bool
    package var body: [UInt8]
    /// When the message was sent (queued); it expires a while after.
    package var createdAt: Date

    package init(
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
