package import ParleyCore
import ParleySQLite

package import struct Foundation.Date

/// A delivery that ``ServerStore/acknowledge(recipient:messages:now:)`` newly marked acknowledged.
package struct AcknowledgedMessage: Sendable, Hashable {
    package var sender: UserID
    package var messageID: MessageID
    package var recipient: UserID
    /// Whether the sender asked for a receipt: the server then sends it one.
    package var wantsReceipt: Bool
    package var acknowledgedAt: Date

    package init(sender: UserID, messageID: MessageID, recipient: UserID, wantsReceipt: Bool, acknowledgedAt: Date) {
        self.sender = sender
        self.messageID = messageID
        self.recipient = recipient
        self.wantsReceipt = wantsReceipt
        self.acknowledgedAt = acknowledgedAt
    }
}
