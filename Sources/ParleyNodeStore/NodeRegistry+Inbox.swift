package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

extension NodeRegistry {
    /// A received message the node has acknowledged but its application has not confirmed yet:
    /// it is handed to the application again after a restart.
    package struct InboxEntry: Sendable, Hashable {
        /// The arrival order; never reused.
        package var sequence: Int64
        /// Whom the message is remembered under in the seen messages.
        package var sender: MessageOrigin
        package var message: Message
        /// The peer node it came from on a direct link; nil through the server.
        package var fromNode: NodeID?
        /// The route it arrived on, as the node names it.
        package var route: String

        package init(sequence: Int64, sender: MessageOrigin, message: Message, fromNode: NodeID?, route: String) {
            self.sequence = sequence
            self.sender = sender
            self.message = message
            self.fromNode = fromNode
            self.route = route
        }
    }

    /// Records a received message as seen and keeps it in the node inbox, in one transaction,
    /// unless a message from `sender` with its ID was seen before.
    ///
    /// Call it before acknowledging the message: once it returns, the message survives a crash
    /// and is either confirmed by the application (``removeFromInbox(sequence:)``) or handed to
    /// it again after a restart (``inbox(limit:)``).
    ///
    /// - Returns: The new entry's sequence, or nil for a duplicate (nothing was written).
    package func receive(
        _ message: Message,
        sender: MessageOrigin,
        fromNode: NodeID?,
        route: String,
        at date: Date
    ) throws(ParleyError) -> Int64? {
        try write("recording a received message") { db in
            try db.cachedStatement(
                sql: "INSERT INTO seen_message (sender, message_id, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
            ).execute(arguments: [sender.key, message.id.storedValue, date.storedMilliseconds])
            guard db.changesCount > 0 else { return nil }
            // NULL for an empty blob: GRDB binds empty Data as NULL.
            try db.cachedStatement(
                sql: """
                    INSERT INTO node_inbox (sender, message_id, sender_user, recipients, is_text, body, sent_at,
                        delivered_at, from_node, route)
                    VALUES (?, ?, ?, ifnull(?, x''), ?, ifnull(?, x''), ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                sender.key, message.id.storedValue, message.sender.storedValue, message.recipients.storedBlob,
                message.body.isText, Data(message.body.bytes), message.sentAt.storedMilliseconds,
                message.deliveredAt.storedMilliseconds, fromNode?.description, route,
            ])
            return db.lastInsertedRowID
        }
    }

    /// The messages in the node inbox, oldest first.
    package func inbox(limit: Int = 100_000) throws(ParleyError) -> [InboxEntry] {
        if limit <= 0 { return [] }
        return try read("reading the node inbox") { db in
            let rows = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT sequence, sender, message_id, sender_user, recipients, is_text, body, sent_at,
                            delivered_at, from_node, route
                        FROM node_inbox ORDER BY sequence LIMIT ?
                        """
                ),
                arguments: [limit]
            )
            return try rows.map { row in
                let fromNode = try row.nullableNodeID(9, "node_inbox.from_node")
                let message = Message(
                    id: try row.messageID(2, "node_inbox.message_id"),
                    sender: try row.userID(3, "node_inbox.sender_user"),
                    recipients: try row.userIDs(4, "node_inbox.recipients"),
                    body: MessageBody(
                        isText: try row.bool(5, "node_inbox.is_text"), bytes: try row.bytes(6, "node_inbox.body")),
                    sentAt: try row.date(7, "node_inbox.sent_at"),
                    deliveredAt: try row.date(8, "node_inbox.delivered_at")
                )
                let key = try row.text(1, "node_inbox.sender")
                guard let sender = MessageOrigin(key: key) else {
                    throw Row.corrupt("node_inbox.sender", key.databaseValue)
                }
                return InboxEntry(
                    sequence: try row.int64(0, "node_inbox.sequence"),
                    sender: sender,
                    message: message,
                    fromNode: fromNode,
                    route: try row.text(10, "node_inbox.route")
                )
            }
        }
    }

    /// Removes a message the application has taken from the node inbox; false if it was not there.
    @discardableResult
    package func removeFromInbox(sequence: Int64) throws(ParleyError) -> Bool {
        try write("removing a message from the node inbox") { db in
            try db.cachedStatement(sql: "DELETE FROM node_inbox WHERE sequence = ?").execute(arguments: [sequence])
            return db.changesCount > 0
        }
    }
}
