public import ParleyCore

public import struct Foundation.Date

/// A delivery that ``ServerStore/acknowledge(recipient:messages:now:)`` newly marked acknowledged.
public struct AcknowledgedMessage: Sendable, Hashable {
    public var sender: UserID
    public var messageID: MessageID
    public var recipient: UserID
    /// Whether the sender asked for a receipt: the server then sends it one.
    public var wantsReceipt: Bool
    public var acknowledgedAt: Date

    public init(sender: UserID, messageID: MessageID, recipient: UserID, wantsReceipt: Bool, acknowledgedAt: Date) {
        self.sender = sender
        self.messageID = messageID
        self.recipient = recipient
        self.wantsReceipt = wantsReceipt
        self.acknowledgedAt = acknowledgedAt
    }
}
