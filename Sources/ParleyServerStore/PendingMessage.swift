package import ParleyCore
import ParleySQLite

package import struct Foundation.Date

/// A message stored for one recipient that the recipient has not acknowledged yet.
package struct PendingMessage: Sendable, Hashable {
    /// The delivery's sequence: page on with ``ServerStore/pendingMessages(for:after:limit:)``.
    package var sequence: Int64
    package var messageID: MessageID
    package var sender: UserID
    /// Everyone the message was addressed to.
    package var recipients: [UserID]
    package var isText: Bool
    package var body: [UInt8]
    /// The sender's clock when it sent the message.
    package var sentAt: Date
    /// When the store accepted the message.
    package var storedAt: Date
    package var wantsReceipt: Bool

    package init(
        sequence: Int64,
        messageID: MessageID,
        sender: UserID,
        recipients: [UserID],
        isText: Bool,
        body: [UInt8],
        sentAt: Date,
        storedAt: Date,
        wantsReceipt: Bool
    ) {
        self.sequence = sequence
        self.messageID = messageID
        self.sender = sender
        self.recipients = recipients
        self.isText = isText
        self.body = body
        self.sentAt = sentAt
        self.storedAt = storedAt
        self.wantsReceipt = wantsReceipt
    }
}
