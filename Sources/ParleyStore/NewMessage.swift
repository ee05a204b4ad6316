public import ParleyCore

public import struct Foundation.Date

/// One message for ``ServerStore/storeMessages(_:now:)``.
public struct NewMessage: Sendable, Hashable {
    public var messageID: MessageID
    public var sender: UserID
    /// Whom to store the message for: distinct, registered users.
    public var recipients: [UserID]
    /// Everyone the message was addressed to, as its recipients are shown.
    public var allRecipients: [UserID]
    public var isText: Bool
    public var body: [UInt8]
    /// The sender's clock when it sent the message.
    public var sentAt: Date
    /// Whether the sender asked for a receipt when a recipient acknowledges.
    public var wantsReceipt: Bool

    public init(
        messageID: MessageID,
        sender: UserID,
        recipients: [UserID],
        allRecipients: [UserID],
        isText: Bool,
        body: [UInt8],
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
