package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

extension NodeRegistry {
    /// A message sent through the server whose delivery receipt has not arrived yet.
    package struct AwaitingReceipt: Sendable, Hashable {
        /// The order it was sent in; never reused.
        package var sequence: Int64
        package var recipient: UserID
        package var messageID: MessageID
        package var sender: UserID
        package var isText: Bool
        package var body: [UInt8]
        package var createdAt: Date
    }

    /// Remembers a message about to be sent to `recipient` through the server, until
    /// ``confirmReceipt(recipient:messageID:)``. Idempotent by (recipient, message ID).
    package func awaitReceipt(
        recipient: UserID,
        messageID: MessageID,
        sender: UserID,
        isText: Bool,
        body: [UInt8],
        createdAt: Date
    ) throws(ParleyError) {
        try write("remembering a message that awaits its receipt") { db in
            // NULL for an empty blob: GRDB binds empty Data as NULL.
            try db.cachedStatement(
                sql: """
                    INSERT INTO awaiting_receipt (recipient, message_id, sender, is_text, body, created_at)
                    VALUES (?, ?, ?, ?, ifnull(?, x''), ?) ON CONFLICT DO NOTHING
                    """
            ).execute(arguments: [
                recipient.storedValue, messageID.storedValue, sender.storedValue, isText, Data(body),
                createdAt.storedMilliseconds,
            ])
        }
    }

    /// The messages to `recipient` still awaiting their receipts, in the order they were sent.
    package func awaitingReceipts(for recipient: UserID, limit: Int = 1000) throws(ParleyError) -> [AwaitingReceipt] {
        if limit <= 0 { return [] }
        return try read("reading the messages awaiting receipts") { db in
            let rows = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT sequence, recipient, message_id, sender, is_text, body, created_at
                        FROM awaiting_receipt WHERE recipient = ? ORDER BY sequence LIMIT ?
                        """
                ),
                arguments: [recipient.storedValue, limit]
            )
            return try rows.map { row in
                AwaitingReceipt(
                    sequence: try row.int64(0, "awaiting_receipt.sequence"),
                    recipient: try row.userID(1, "awaiting_receipt.recipient"),
                    messageID: try row.messageID(2, "awaiting_receipt.message_id"),
                    sender: try row.userID(3, "awaiting_receipt.sender"),
                    isText: try row.bool(4, "awaiting_receipt.is_text"),
                    body: try row.bytes(5, "awaiting_receipt.body"),
                    createdAt: try row.date(6, "awaiting_receipt.created_at")
                )
            }
        }
    }

    /// Forgets a message once `recipient` has it (its receipt came, or it was acknowledged on a
    /// direct link, or sending it failed); false if it was not remembered.
    @discardableResult
    package func confirmReceipt(recipient: UserID, messageID: MessageID) throws(ParleyError) -> Bool {
        try write("forgetting a message that awaited its receipt") { db in
            try db.cachedStatement(sql: "DELETE FROM awaiting_receipt WHERE recipient = ? AND message_id = ?")
                .execute(arguments: [recipient.storedValue, messageID.storedValue])
            return db.changesCount > 0
        }
    }

    /// Forgets messages sent before `date` whose receipts never came (receipts are not stored
    /// for a sender that is offline when the recipient acknowledges); returns how many.
    @discardableResult
    package func pruneAwaitingReceipts(before date: Date) throws(ParleyError) -> Int {
        try write("pruning messages awaiting receipts") { db in
            try db.cachedStatement(sql: "DELETE FROM awaiting_receipt WHERE created_at < ?")
                .execute(arguments: [date.storedMilliseconds])
            return db.changesCount
        }
    }
}
