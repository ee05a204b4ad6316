import Foundation
import ParleyCore

/// A delivery receipt as `send --receipt` prints it.
struct ReceiptRecord: Encodable {
    var event = "receipt"
    var messageID: UInt64
    var recipient: UInt32
    var acknowledgedAt: Date

    init(_ receipt: DeliveryReceipt) {
        messageID = receipt.messageID.rawValue
        recipient = receipt.recipient.rawValue
        acknowledgedAt = receipt.acknowledgedAt
    }

    /// "receipt 1001 2025-01-01T12:00:00.000Z"
    var line: String {
        "receipt \(recipient) \(Timestamp.format(acknowledgedAt))"
    }
}
