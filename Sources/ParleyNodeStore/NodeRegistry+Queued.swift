package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

/// Both outboxes (users' and nodes') seen as one list of waiting messages: to show, cancel and
/// expire them.
extension NodeRegistry {
    /// Every message waiting in the outboxes, once per recipient still to reach, oldest first
    /// (the users' outbox, then the nodes').
    package func queuedMessages() throws(ParleyError) -> [QueuedMessage] {
        try read("listing the outbox") { db in try Self.queued(db, createdBefore: nil) }
    }

    /// Removes the message with `messageID` from both outboxes, for every recipient still
    /// waiting for it.
    ///
    /// - Returns: How many (message, recipient) entries were removed: 0 for a message that is not
    ///   (or no longer) queued.
    @discardableResult
    package func cancelQueued(_ messageID: MessageID) throws(ParleyError) -> Int {
        try write("cancelling a queued message") { db in
            let id = messageID.storedValue
            try db.cachedStatement(
                sql: """
                    DELETE FROM outbox_recipient
                    WHERE sequence IN (SELECT sequence FROM outbox_message WHERE message_id = ?)
                    """
            ).execute(arguments: [id])
            var removed = db.changesCount
            try db.cachedStatement(sql: "DELETE FROM outbox_message WHERE message_id = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM node_outbox WHERE message_id = ?").execute(arguments: [id])
            removed += db.changesCount
            return removed
        }
    }

    /// Removes from both outboxes the messages created before `date`, in one transaction.
    ///
    /// - Returns: What was removed, once per recipient that was still waiting.
    package func expireQueued(createdBefore date: Date) throws(ParleyError) -> [QueuedMessage] {
        try write("expiring queued messages") { db in
            let expired = try Self.queued(db, createdBefore: date)
            if expired.isEmpty { return [] }
            let cutoff = date.storedMilliseconds
            try db.cachedStatement(
                sql: """
                    DELETE FROM outbox_recipient
                    WHERE sequence IN (SELECT sequence FROM outbox_message WHERE created_at < ?)
                    """
            ).execute(arguments: [cutoff])
            try db.cachedStatement(sql: "DELETE FROM outbox_message WHERE created_at < ?").execute(arguments: [cutoff])
            try db.cachedStatement(sql: "DELETE FROM node_outbox WHERE created_at < ?").execute(arguments: [cutoff])
            return expired
        }
    }

    private static func queued(_ db: Database, createdBefore date: Date?) throws -> [QueuedMessage] {
        // One row per (message, recipient): the users' outbox first, then the nodes', each in
        // its order. A user recipient has a user ID and no node ID, a node recipient the reverse.
        let rows = try Row.fetchCursor(
            db.cachedStatement(
                sql: """
                    SELECT m.message_id, m.sender, p.recipient, NULL, m.is_text, m.body, m.created_at,
                        0 AS outbox, p.sequence AS sequence
                    FROM outbox_recipient AS p JOIN outbox_message AS m ON m.sequence = p.sequence
                    WHERE m.created_at < ?1
                    UNION ALL
                    SELECT message_id, sender, NULL, node_id, is_text, body, created_at, 1, sequence
                    FROM node_outbox WHERE created_at < ?1
                    ORDER BY outbox, sequence, 3
                    """
            ),
            arguments: [date?.storedMilliseconds ?? Int64.max]
        )
        var queued: [QueuedMessage] = []
        while let row = try rows.next() {
            let recipient: QueuedMessage.Recipient =
                if let node = try row.nullableNodeID(3, "node_outbox.node_id") {
                    .node(node)
                } else {
                    .user(try row.userID(2, "outbox_recipient.recipient"))
                }
            queued.append(
                QueuedMessage(
                    messageID: try row.messageID(0, "outbox.message_id"),
                    sender: try row.userID(1, "outbox.sender"),
                    recipient: recipient,
                    isText: try row.bool(4, "outbox.is_text"),
                    body: try row.bytes(5, "outbox.body"),
                    createdAt: try row.date(6, "outbox.created_at")
                )
            )
        }
        return queued
    }
}
