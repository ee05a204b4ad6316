package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

extension NodeRegistry {
    /// A message waiting in the node outbox: addressed to a node (peer-to-peer mode), not a user.
    package struct NodeOutboxEntry: Sendable, Hashable {
        /// The outbox order; never reused.
        package var sequence: Int64
        package var nodeID: NodeID
        package var messageID: MessageID
        package var sender: UserID
        package var isText: Bool
        package var body: [UInt8]
        package var createdAt: Date

        package init(
            sequence: Int64,
            nodeID: NodeID,
            messageID: MessageID,
            sender: UserID,
            isText: Bool,
            body: [UInt8],
            createdAt: Date
        ) {
            self.sequence = sequence
            self.nodeID = nodeID
            self.messageID = messageID
            self.sender = sender
            self.isText = isText
            self.body = body
            self.createdAt = createdAt
        }
    }

    // MARK: Seen messages

    /// Whether a message from `sender` with this ID was delivered to this node's application
    /// already.
    package func hasSeen(sender: MessageOrigin, messageID: MessageID) throws(ParleyError) -> Bool {
        try read("reading seen messages") { db in
            try Bool.fetchOne(
                db.cachedStatement(
                    sql: "SELECT EXISTS (SELECT 1 FROM seen_message WHERE sender = ? AND message_id = ?)"
                ),
                arguments: [sender.key, messageID.storedValue]
            ) ?? false
        }
    }

    /// Records that a message was delivered to this node's application.
    ///
    /// - Returns: True if it was not recorded before.
    @discardableResult
    package func recordSeen(sender: MessageOrigin, messageID: MessageID, at date: Date) throws(ParleyError) -> Bool {
        try write("recording a seen message") { db in
            try db.cachedStatement(
                sql: "INSERT INTO seen_message (sender, message_id, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
            ).execute(arguments: [sender.key, messageID.storedValue, date.storedMilliseconds])
            return db.changesCount > 0
        }
    }

    /// Forgets seen messages recorded before `date`; returns how many.
    @discardableResult
    package func pruneSeen(before date: Date) throws(ParleyError) -> Int {
        try write("pruning seen messages") { db in
            try db.cachedStatement(sql: "DELETE FROM seen_message WHERE seen_at < ?")
                .execute(arguments: [date.storedMilliseconds])
            return db.changesCount
        }
    }

    // MARK: Node outbox

    /// Puts a message for a node in the durable node outbox. Idempotent by (node, message ID).
    @discardableResult
    package func enqueue(
        forNode nodeID: NodeID,
        messageID: MessageID,
        sender: UserID,
        isText: Bool,
        body: [UInt8],
        createdAt: Date
    ) throws(ParleyError) -> EnqueueResult {
        try write("enqueuing a message for a node") { db in
            // NULL for an empty blob: GRDB binds empty Data as NULL.
            try db.cachedStatement(
                sql: """
                    INSERT INTO node_outbox (node_id, message_id, sender, is_text, body, created_at)
                    VALUES (?, ?, ?, ?, ifnull(?, x''), ?) ON CONFLICT DO NOTHING
                    """
            ).execute(arguments: [
                nodeID.description, messageID.storedValue, sender.storedValue, isText, Data(body),
                createdAt.storedMilliseconds,
            ])
            return db.changesCount > 0 ? .enqueued : .duplicate
        }
    }

    /// The messages waiting for `nodeID` (nil: for every node), oldest first.
    package func pendingForNode(_ nodeID: NodeID?, limit: Int = 1000) throws(ParleyError) -> [NodeOutboxEntry] {
        if limit <= 0 { return [] }
        return try read("reading the node outbox") { db in
            let columns = "sequence, node_id, message_id, sender, is_text, body, created_at"
            let rows: [Row]
            if let nodeID {
                rows = try Row.fetchAll(
                    db.cachedStatement(
                        sql: "SELECT \(columns) FROM node_outbox WHERE node_id = ? ORDER BY sequence LIMIT ?"
                    ),
                    arguments: [nodeID.description, limit]
                )
            } else {
                rows = try Row.fetchAll(
                    db.cachedStatement(sql: "SELECT \(columns) FROM node_outbox ORDER BY sequence LIMIT ?"),
                    arguments: [limit]
                )
            }
            return try rows.map { row in
                NodeOutboxEntry(
                    sequence: try row.int64(0, "node_outbox.sequence"),
                    nodeID: try row.nodeID(1, "node_outbox.node_id"),
                    messageID: try row.messageID(2, "node_outbox.message_id"),
                    sender: try row.userID(3, "node_outbox.sender"),
                    isText: try row.bool(4, "node_outbox.is_text"),
                    body: try row.bytes(5, "node_outbox.body"),
                    createdAt: try row.date(6, "node_outbox.created_at")
                )
            }
        }
    }

    /// Removes a delivered message from the node outbox; false if it was not there.
    @discardableResult
    package func markDeliveredToNode(sequence: Int64) throws(ParleyError) -> Bool {
        try write("marking a node outbox message delivered") { db in
            try db.cachedStatement(sql: "DELETE FROM node_outbox WHERE sequence = ?").execute(arguments: [sequence])
            return db.changesCount > 0
        }
    }
}
