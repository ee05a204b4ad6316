public import struct Foundation.Date

/// What a message carries: UTF-8 text or opaque bytes.
public enum MessageBody: Hashable, Sendable {
    case text(String)
    case binary([UInt8])

    /// The body from its stored or wire form (``isText`` and ``bytes``). Text that is not valid
    /// UTF-8 is repaired (invalid sequences become U+FFFD); check it first where that must fail.
    public init(isText: Bool, bytes: [UInt8]) {
        self = isText ? .text(String(decoding: bytes, as: UTF8.self)) : .binary(bytes)
    }

    /// The body as bytes, as it travels on the wire.
    public var bytes: [UInt8] {
        switch self {
        case .text(let text): Array(text.utf8)
        case .binary(let bytes): bytes
        }
    }

    public var isText: Bool {
        if case .text = self { return true }
        return false
    }
}

/// A message as its recipient receives it.
public struct Message: Hashable, Sendable {
    public var id: MessageID
    public var sender: UserID
    public var recipients: [UserID]
    public var body: MessageBody
    /// The sender's clock when it sent the message.
    public var sentAt: Date
    /// When the server handed it to this recipient.
    public var deliveredAt: Date

    public init(
        id: MessageID,
        sender: UserID,
        recipients: [UserID],
        body: MessageBody,
        sentAt: Date,
        deliveredAt: Date
    ) {
        self.id = id
        self.sender = sender
        self.recipients = recipients
        self.body = body
        self.sentAt = sentAt
        self.deliveredAt = deliveredAt
    }
}

/// What the server did with a message for one recipient.
public struct DeliveryResult: Hashable, Sendable {
    public enum Status: Hashable, Sendable {
        /// Stored durably; the recipient is online and the message is on its way.
        case acceptedOnline
        /// Stored durably; the recipient gets it at its next logon.
        case acceptedOffline
        /// Handed to the server application.
        case acceptedByServer
        /// Not accepted.
        case failed(ParleyError)
    }

    public var recipient: UserID
    public var status: Status
    /// True when the server had already accepted this message ID for this recipient.
    public var duplicate: Bool

    public init(recipient: UserID, status: Status, duplicate: Bool = false) {
        self.recipient = recipient
        self.status = status
        self.duplicate = duplicate
    }

    /// True for every accepted status.
    public var isAccepted: Bool {
        if case .failed = status { return false }
        return true
    }
}

/// A recipient acknowledged a message sent with a receipt request.
public struct DeliveryReceipt: Hashable, Sendable {
    public var messageID: MessageID
    public var recipient: UserID
    public var acknowledgedAt: Date

    public init(messageID: MessageID, recipient: UserID, acknowledgedAt: Date) {
        self.messageID = messageID
        self.recipient = recipient
        self.acknowledgedAt = acknowledgedAt
    }
}
