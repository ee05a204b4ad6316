package import ParleyCore
import ParleySQLite

/// A message waiting in the outbox, as ``NodeRegistry/pending(for:after:limit:)`` returns it.
package struct OutboxEntry: Sendable, Hashable {
    /// The entry's place in the outbox's order: strictly increasing in enqueue order, never
    /// reused. Page on with it.
    package var sequence: Int64
    /// The message as enqueued, with all its recipients.
    package var message: OutboxMessage
    /// The recipients it has not been delivered to yet, in the message's recipient order.
    package var pendingRecipients: [UserID]

    package init(sequence: Int64, message: OutboxMessage, pendingRecipients: [UserID]) {
        self.sequence = sequence
        self.message = message
        self.pendingRecipients = pendingRecipients
    }
}
