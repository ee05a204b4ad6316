public import ParleyCore

public import struct Foundation.Date

/// A message stored for one recipient that the recipient has not acknowledged yet.
public struct PendingMessage: Sendable, Hashable {
    /// The delivery's sequence: page on with ``ServerStore/pendingMessages(for:after:limit:)``.
    public var sequence: Int64
    public var messageID: MessageID
    public var sender: UserID
    /// Everyone the message was addressed to.
    public var recipients: [UserID]
    public var isText: Bool
    public var body: [UInt8]
    /// The sender's clock when it sent the message.
    public var sentAt: Date
    /// When the store accepted the message.
    public var storedAt: Date
    public var wantsReceipt: Bool

    public init(
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
