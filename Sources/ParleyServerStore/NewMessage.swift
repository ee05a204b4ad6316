package import NIOCore
package import ParleyCore
import ParleySQLite

package import struct Foundation.Date

/// One message for ``ServerStore/storeMessages(_:now:)``.
package struct NewMessage: Sendable, Hashable {
    package var messageID: MessageID
    package var sender: UserID
    /// Whom to store the message for: distinct, registered users.
    package var recipients: [UserID]
    /// Everyone the message was addressed to, as its recipients are shown.
    package var allRecipients: [UserID]
    package var isText: Bool
    /// The body as it arrived (a slice of the read buffer on the message path: no copy, and
    /// online recipients get the same bytes).
    package var body: ByteBuffer
    /// The sender's clock when it sent the message.
    package var sentAt: Date
    /// Whether the sender asked for a receipt when a recipient acknowledges.
    package var wantsReceipt: Bool

    package init(
        messageID: MessageID,
        sender: UserID,
        recipients: [UserID],
        allRecipients: [UserID],
        isText: Bool,
        body: ByteBuffer,
        sentAt: Date,
        wantsReceipt: Bool
    ) {
        self.messageID = messageID
        self.sender = sender
        self.recipients = recipients
        self.allRecipients = allRecipients
        self.isText = isText
        self.body = body
        self.sentAt = sentAt
        self.wantsReceipt = wantsReceipt
    }
}
