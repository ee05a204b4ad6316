package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

extension NodeRegistry {
    /// What ``NodeRegistry/enqueue(_:)`` did.
    package enum EnqueueResult: Sendable, Hashable {
        /// The message is in the outbox now.
        case enqueued
        /// The outbox has (or has delivered) a message with this sender and message ID already;
        /// nothing was stored.
        case duplicate
    }

    /// Puts a message in the durable outbox, to leave when a route to its recipients exists.
    ///
    /// Idempotent by (sender, message ID): enqueuing a message the outbox holds, or delivered to
    /// every recipient and has not pruned yet (``pruneDelivered(before:)``), stores nothing and
    /// returns ``EnqueueResult/duplicate``. Once this returns, the message survives a restart.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidRequest`` when the message has
    ///   no recipient.
    @discardableResult
    package func enqueue(_ message: OutboxMessage) throws(ParleyError) -> EnqueueResult {
        guard !message.recipients.isEmpty else {
            throw ParleyError(code: .invalidRequest, message: "message \(message.messageID) has no recipient")
        }
        return try write("enqueuing a message") { db in
            let exists = try db.cachedStatement(
                sql: """
                    SELECT EXISTS (SELECT 1 FROM outbox_message WHERE sender = ?1 AND message_id = ?2)
                        OR EXISTS (SELECT 1 FROM outbox_delivered WHERE sender = ?1 AND message_id = ?2)
                    """
            )
            let arguments: StatementArguments = [message.sender.storedValue, message.messageID.storedValue]
            if try Bool.fetchOne(exists, arguments: arguments) ?? false { return .duplicate }
            // NULL for an empty blob: GRDB binds empty Data as NULL.
            try db.cachedStatement(
                sql: """
                    INSERT INTO outbox_message (sender, message_id, recipients, is_text, body, created_at)
                    VALUES (?, ?, ifnull(?, x''), ?, ifnull(?, x''), ?)
                    """
            ).execute(arguments: [
                message.sender.storedValue, message.messageID.storedValue, message.recipients.storedBlob,
                message.isText, Data(message.body), message.createdAt.storedMilliseconds,
            ])
            let sequence = db.lastInsertedRowID
            let insertRecipient = try db.cachedStatement(
                sql: "INSERT INTO outbox_recipient (recipient, sequence) VALUES (?, ?) ON CONFLICT DO NOTHING"
            )
            for recipient in message.recipients {
                try insertRecipient.execute(arguments: [recipient.storedValue, sequence])
            }
            return .enqueued
        }
    }

    /// The messages waiting for `recipient` (or, for nil, all waiting messages), oldest first,
    /// with a sequence above `sequence`, at most `limit` of them.
    ///
    /// Pass 0 to start, then the last sequence received to page on. The order is the enqueue
    /// order, so each recipient gets its messages in the order they were sent.
    package func pending(
        for recipient: UserID?,
        after sequence: Int64 = 0,
        limit: Int = 1000
    ) throws(ParleyError) -> [OutboxEntry] {
        if limit <= 0 { return [] }
        let columns = """
            m.sequence, m.sender, m.message_id, m.recipients, m.is_text, m.body, m.created_at,
            (SELECT group_concat(r.recipient) FROM outbox_recipient AS r WHERE r.sequence = m.sequence)
            """
        return try read("reading the outbox") { db in
            let statement: Statement
            let arguments: StatementArguments
            if let recipient {
                statement = try db.cachedStatement(
                    sql: """
                        SELECT \(columns)
                        FROM outbox_recipient AS p JOIN outbox_message AS m ON m.sequence = p.sequence
                        WHERE p.recipient = ? AND p.sequence > ?
                        ORDER BY p.sequence
                        LIMIT ?
                        """
                )
                arguments = [recipient.storedValue, sequence, limit]
            } else {
                statement = try db.cachedStatement(
                    sql: "SELECT \(columns) FROM outbox_message AS m WHERE m.sequence > ? ORDER BY m.sequence LIMIT ?"
                )
                arguments = [sequence, limit]
            }
            var entries: [OutboxEntry] = []
            let rows = try Row.fetchCursor(statement, arguments: arguments)
            while let row = try rows.next() {
                entries.append(try Self.decodeOutboxEntry(row))
            }
            return entries
        }
    }

    /// Everyone something waits for: the users of the outbox and the nodes of the node outbox,
    /// each list in the order of its oldest waiting message.
    package func outboxRecipients() throws(ParleyError) -> (users: [UserID], nodes: [NodeID]) {
        try read("listing the outbox's recipients") { db in
            var users: [UserID] = []
            let userRows = try Row.fetchCursor(
                db.cachedStatement(
                    sql: "SELECT recipient FROM outbox_recipient GROUP BY recipient ORDER BY MIN(sequence)"
                )
            )
            while let row = try userRows.next() { users.append(try row.userID(0, "outbox_recipient.recipient")) }
            var nodes: [NodeID] = []
            let nodeRows = try Row.fetchCursor(
                db.cachedStatement(sql: "SELECT node_id FROM node_outbox GROUP BY node_id ORDER BY MIN(sequence)")
            )
            while let row = try nodeRows.next() { nodes.append(try row.nodeID(0, "node_outbox.node_id")) }
            return (users, nodes)
        }
    }

    /// How many messages wait for `recipient` (or, for nil, in all).
    package func pendingCount(for recipient: UserID? = nil) throws(ParleyError) -> Int {
        try read("counting the outbox") { db in
            if let recipient {
                let statement = try db.cachedStatement(sql: "SELECT COUNT(*) FROM outbox_recipient WHERE recipient = ?")
                return try Int.fetchOne(statement, arguments: [recipient.storedValue]) ?? 0
            }
            return try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM outbox_message")) ?? 0
        }
    }

    /// Records that a message reached one of its recipients: the recipient is no longer pending,
    /// and the message leaves the outbox with its last pending recipient.
    ///
    /// The delivery is remembered (with its route) so enqueuing the message again is a
    /// duplicate, until ``pruneDelivered(before:)``.
    ///
    /// Call it once the route accepted the message (the server's delivery result, the peer's
    /// acknowledgement). A crash in between sends the message again after the restart, with the
    /// same sender and message ID, which the server and receiving nodes de-duplicate.
    ///
    /// - Parameters:
    ///   - route: How it left, for the record ("server", "direct:<node ID>", …).
    ///   - deliveredAt: When it was delivered.
    /// - Returns: Whether the recipient was pending; false for an unknown or already delivered one.
    @discardableResult
    package func markDelivered(
        messageID: MessageID,
        sender: UserID,
        recipient: UserID,
        route: String,
        at deliveredAt: Date
    ) throws(ParleyError) -> Bool {
        try write("marking an outbox message delivered") { db in
            let find = try db.cachedStatement(
                sql: "SELECT sequence FROM outbox_message WHERE sender = ? AND message_id = ?"
            )
            guard
                let row = try Row.fetchOne(find, arguments: [sender.storedValue, messageID.storedValue])
            else { return false }
            let sequence = try row.int64(0, "outbox_message.sequence")
            try db.cachedStatement(sql: "DELETE FROM outbox_recipient WHERE recipient = ? AND sequence = ?")
                .execute(arguments: [recipient.storedValue, sequence])
            guard db.changesCount > 0 else { return false }
            try db.cachedStatement(
                sql: """
                    INSERT INTO outbox_delivered (sender, message_id, recipient, route, delivered_at)
                    VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT DO NOTHING
                    """
            ).execute(arguments: [
                sender.storedValue, messageID.storedValue, recipient.storedValue, route,
                deliveredAt.storedMilliseconds,
            ])
            try db.cachedStatement(
                sql: """
                    DELETE FROM outbox_message
                    WHERE sequence = ?1 AND NOT EXISTS (SELECT 1 FROM outbox_recipient WHERE sequence = ?1)
                    """
            ).execute(arguments: [sequence])
            return true
        }
    }

    /// Forgets deliveries recorded before `date`: enqueuing those messages again is no longer
    /// recognized as a duplicate.
    ///
    /// - Returns: How many delivery records were deleted.
    @discardableResult
    package func pruneDelivered(before date: Date) throws(ParleyError) -> Int {
        try write("pruning delivered outbox messages") { db in
            try db.cachedStatement(sql: "DELETE FROM outbox_delivered WHERE delivered_at < ?")
                .execute(arguments: [date.storedMilliseconds])
            return db.changesCount
        }
    }

    private static func decodeOutboxEntry(_ row: Row) throws -> OutboxEntry {
        let sequence = try row.int64(0, "outbox_message.sequence")
        let message = OutboxMessage(
            messageID: try row.messageID(2, "outbox_message.message_id"),
            sender: try row.userID(1, "outbox_message.sender"),
            recipients: try row.userIDs(3, "outbox_message.recipients"),
            isText: try row.bool(4, "outbox_message.is_text"),
            body: try row.bytes(5, "outbox_message.body"),
            createdAt: try row.date(6, "outbox_message.created_at")
        )
        // group_concat of the pending recipients' integers: "1042,1043".
        guard let list = try row.nullableText(7, "outbox_recipient.recipient") else {
            throw ParleyError(code: .storageError, message: "corrupt row: outbox message \(sequence) has no recipient")
        }
        var pending = Set<UserID>()
        for item in list.split(separator: ",") {
            guard let id = UserID(item) else {
                throw ParleyError(
                    code: .storageError,
                    message: "corrupt row: outbox message \(sequence) has a recipient that is no user ID"
                )
            }
            pending.insert(id)
        }
        var pendingRecipients: [UserID] = []
        for recipient in message.recipients where pending.remove(recipient) != nil {
            pendingRecipients.append(recipient)
        }
        // Pending recipients the addressed list lacks (only in a damaged file) still count.
        pendingRecipients += pending.sorted()
        return OutboxEntry(sequence: sequence, message: message, pendingRecipients: pendingRecipients)
    }
}
