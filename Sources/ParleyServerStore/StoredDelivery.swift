package import ParleyCore
import ParleySQLite

/// What ``ServerStore/storeMessages(_:now:)`` did with one message for one recipient.
package struct StoredDelivery: Sendable, Hashable {
    package var recipient: UserID
    /// The delivery's place in the store's global, strictly increasing order.
    package var sequence: Int64
    /// True when the store already had this (recipient, sender, message ID) and stored nothing.
    package var duplicate: Bool
    /// True when the earlier copy has been acknowledged already (only for duplicates).
    package var alreadyAcknowledged: Bool

    package init(recipient: UserID, sequence: Int64, duplicate: Bool, alreadyAcknowledged: Bool) {
        self.recipient = recipient
        self.sequence = sequence
        self.duplicate = duplicate
        self.alreadyAcknowledged = alreadyAcknowledged
    }
}
