package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

/// The server's history journal (`history-journal.sqlite` in the data directory): what the
/// message path accepted and what recipients acknowledged, appended in order to a table without
/// any index, so that writing it costs the message path little. An indexer moves it into the
/// searchable history (``HistoryStore/apply(_:)``) when the server has time.
///
/// Rows are numbered in order and never again with a number used before (AUTOINCREMENT): the
/// history records the last number it took, and the journal is emptied as it is taken.
///
/// A separate file, so that appending never waits for the indexer's write lock (the indexer
/// runs at a low priority and may hold its lock for a while). What was moved is recorded in
/// the history file in the same transaction as the rows (``HistoryStore/appliedJournalSequence()``),
/// so a crash between the two files neither loses nor repeats an entry; the journal's applied
/// rows are deleted afterwards (``deleteThrough(_:)``).
package final class HistoryJournal: Sendable {
    /// The name of the journal file in the server's data directory.
    package static let fileName = "history-journal.sqlite"

    /// A delivery: `recipient` acknowledged `sender`'s message `messageID` at `at`.
    package typealias Delivery = (sender: UserID, messageID: MessageID, recipient: UserID, at: Date)

    /// Journal rows read in order, ready for ``HistoryStore/apply(_:)``.
    package struct Batch: Sendable {
        package var entries: [HistoryEntry] = []
        package var delivered: [Delivery] = []
        /// The sequence number of the last row read (rows that could not be read included).
        package var lastSequence: Int64 = 0
        /// Rows that could not be read (damaged), skipped.
        package var unreadable = 0
        package var isEmpty: Bool { lastSequence == 0 }
    }

    /// The database file.
    package let path: String
    let database: SQLiteDatabase

    /// Opens the journal at `path`, creating the file and its directory if needed.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `storageError` when the file cannot be
    ///   created, opened or migrated.
    package init(path: String, durability: ServerStore.Configuration.Durability = .normal) throws(ParleyError) {
        self.path = path
        database = try SQLiteDatabase(
            path: path, durability: durability, migrator: Self.migrator, description: "the history journal")
    }

    /// Append-only: register a new migration ("v2-history-journal-…"), never edit one.
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-history-journal") { db in
            // `delivery` 0: an entry (`at` its delivery time, if known then); 1: a delivery of
            // the entry (sender, message_id, recipient) at `at`.
            try db.execute(
                sql: """
                    CREATE TABLE journal (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        delivery INTEGER NOT NULL,
                        sender INTEGER NOT NULL,
                        message_id INTEGER NOT NULL,
                        recipient INTEGER NOT NULL,
                        kind INTEGER NOT NULL,
                        body BLOB NOT NULL,
                        sent_at INTEGER NOT NULL,
                        at INTEGER
                    )
                    """
            )
        }
        return migrator
    }()

    /// Makes the next row's sequence number larger than `sequence` (the last one applied to the
    /// history): a journal file deleted or replaced must not start again below what the history
    /// took, or its rows would be taken as applied.
    package func continueAfter(_ sequence: Int64) throws(ParleyError) {
        try database.write("positioning the history journal") { db in
            let current = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'journal'")
            if let current {
                if current < sequence {
                    try db.execute(
                        sql: "UPDATE sqlite_sequence SET seq = ? WHERE name = 'journal'", arguments: [sequence])
                }
            } else if sequence > 0 {
                try db.execute(
                    sql: "INSERT INTO sqlite_sequence (name, seq) VALUES ('journal', ?)", arguments: [sequence])
            }
        }
    }

    /// Appends entries, then deliveries, in one transaction.
    package func append(_ entries: [HistoryEntry], delivered: [Delivery]) throws(ParleyError) {
        guard !entries.isEmpty || !delivered.isEmpty else { return }
        try database.write("appending to the history journal") { db in
            let statement = try RawStatement(
                db,
                sql: """
                    INSERT INTO journal (delivery, sender, message_id, recipient, kind, body, sent_at, at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """
            )
            for entry in entries {
                statement.bind(1, Int64(0))
                statement.bind(2, entry.sender.storedValue)
                statement.bind(3, entry.messageID.storedValue)
                statement.bind(4, entry.recipient.storedValue)
                statement.bind(5, HistoryTable.kindValue(entry.kind))
                statement.bind(6, bytes: entry.body)
                statement.bind(7, entry.sentAt.storedMilliseconds)
                if let deliveredAt = entry.deliveredAt {
                    statement.bind(8, deliveredAt.storedMilliseconds)
                } else {
                    statement.bindNull(8)
                }
                try statement.execute()
            }
            for delivery in delivered {
                statement.bind(1, Int64(1))
                statement.bind(2, delivery.sender.storedValue)
                statement.bind(3, delivery.messageID.storedValue)
                statement.bind(4, delivery.recipient.storedValue)
                statement.bind(5, Int64(0))
                statement.bind(6, bytes: [])
                statement.bind(7, Int64(0))
                statement.bind(8, delivery.at.storedMilliseconds)
                try statement.execute()
            }
        }
    }

    /// Up to `limit` rows after sequence number `sequence`, in order. A damaged row is skipped
    /// and counted, never a reason to stop: history is a record, and one bad row must not hold
    /// up the rest.
    package func read(after sequence: Int64, limit: Int) throws(ParleyError) -> Batch {
        try database.read("reading the history journal") { db in
            var batch = Batch()
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT seq, delivery, sender, message_id, recipient, kind, body, sent_at, at
                    FROM journal WHERE seq > ? ORDER BY seq LIMIT ?
                    """,
                arguments: [sequence, limit]
            )
            while let row = try rows.next() {
                batch.lastSequence = row[0]
                do {
                    try Self.add(row, to: &batch)
                } catch {
                    batch.unreadable += 1
                }
            }
            return batch
        }
    }

    private static func add(_ row: Row, to batch: inout Batch) throws {
        let sender = try row.userID(2, "journal.sender")
        let messageID = try row.messageID(3, "journal.message_id")
        let recipient = try row.userID(4, "journal.recipient")
        let at = try row.decode(DatabaseValue.self, atIndex: 8)
        switch try row.int64(1, "journal.delivery") {
        case 0:
            let kind = try HistoryTable.kind(row, 5, "journal.kind")
            var entry = HistoryEntry(
                messageID: messageID, sender: sender, recipient: recipient, kind: kind,
                body: try row.bytes(6, "journal.body"), sentAt: try row.date(7, "journal.sent_at"))
            if !at.isNull { entry.deliveredAt = try row.date(8, "journal.at") }
            batch.entries.append(entry)
        case 1:
            batch.delivered.append((sender, messageID, recipient, try row.date(8, "journal.at")))
        case let other:
            throw Row.corrupt("journal.delivery", other.databaseValue)
        }
    }

    /// Deletes the rows up to and including `sequence` (applied to the history).
    package func deleteThrough(_ sequence: Int64) throws(ParleyError) {
        try database.write("trimming the history journal") { db in
            try db.execute(sql: "DELETE FROM journal WHERE seq <= ?", arguments: [sequence])
        }
    }

    /// How many rows wait to be applied or deleted.
    package func count() throws(ParleyError) -> Int {
        try database.read("counting the history journal") { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM journal") ?? 0
        }
    }
}
