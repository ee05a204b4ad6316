package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

/// The server's message history, in its own SQLite file (`history.sqlite` in the data
/// directory), apart from the store-and-forward queue (``ServerStore``): writing history never
/// takes the queue's write lock, so it cannot slow the acknowledged message path.
///
/// One entry per (sender, message ID, recipient), with a full-text index (SQLite FTS5,
/// `unicode61 remove_diacritics 2`) over the text of text messages and the description of
/// files. Searches are structured (``/ParleyCore/HistoryQuery``), never raw SQL, and paged with
/// a cursor. Like ``ServerStore`` it owns its schema (named, append-only migrations from
/// "v1-history") and every method blocks until SQLite answers.
package final class HistoryStore: Sendable {
    /// The name of the history file in the server's data directory.
    package static let fileName = "history.sqlite"

    /// The database file.
    package let path: String
    let database: SQLiteDatabase

    /// Opens the history at `path`, creating the file and its parent directory if needed.
    ///
    /// - Parameter durability: SQLite's synchronous mode; history follows the server's.
    /// - Throws: ``/ParleyCore/ParleyError`` with code `storageError` when the file cannot be
    ///   created, opened or migrated.
    package init(path: String, durability: ServerStore.Configuration.Durability = .normal) throws(ParleyError) {
        self.path = path
        database = try SQLiteDatabase(
            path: path, durability: durability, migrator: Self.migrator, description: "the history database")
    }

    /// The history file's schema. Append-only: register a new migration ("v2-history-…"), never
    /// edit one.
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-history") { db in try HistoryTable.create(db) }
        migrator.registerMigration("v2-history-batched-fts") { db in try HistoryTable.dropInsertTrigger(db) }
        migrator.registerMigration("v3-history-undelivered-index") { db in
            try HistoryTable.indexUndeliveredRowsOnly(db)
        }
        migrator.registerMigration("v4-history-journal-applied") { db in
            // The last row of the journal (``HistoryJournal``) moved into this file.
            try db.execute(
                sql: """
                    CREATE TABLE journal_applied (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
                    INSERT INTO journal_applied (id, seq) VALUES (1, 0);
                    """
            )
        }
        return migrator
    }()

    /// Records new entries (one per recipient of a message) and deliveries in one transaction:
    /// entries first, so a delivery may refer to an entry of the same call. An entry recorded
    /// again while it is undelivered (a resent message) keeps its row; a delivery keeps its first
    /// time. An entry recorded again after its delivery is a second row: the server records a
    /// message once, its message store having dropped resent copies.
    package func record(
        _ entries: [HistoryEntry],
        delivered: [(sender: UserID, messageID: MessageID, recipient: UserID, at: Date)] = []
    ) throws(ParleyError) {
        guard !entries.isEmpty || !delivered.isEmpty else { return }
        try database.write("recording history") { db in
            try HistoryTable.insert(entries, into: db, uniqueness: .undeliveredRows)
            try HistoryTable.markDelivered(delivered, in: db)
        }
    }

    /// Moves up to `limit` rows of `journal` into the history, in one transaction that also
    /// records the last row moved, so that each row is applied once even with several callers
    /// at a time or a crash in between. Returns how many rows it moved (0: none waited), the
    /// last one's sequence number (for ``HistoryJournal/deleteThrough(_:)``) and how many of
    /// them were damaged and skipped.
    package func apply(_ journal: HistoryJournal, limit: Int) throws(ParleyError) -> (
        rows: Int, lastSequence: Int64, unreadable: Int
    ) {
        try database.write("indexing the history journal") { db in
            let applied = try Int64.fetchOne(db, sql: "SELECT seq FROM journal_applied WHERE id = 1") ?? 0
            let batch = try journal.read(after: applied, limit: limit)
            guard !batch.isEmpty else { return (0, applied, 0) }
            let (entries, delivered) = Self.merge(batch.entries, batch.delivered)
            try HistoryTable.insert(entries, into: db, uniqueness: .undeliveredRows)
            try HistoryTable.markDelivered(delivered, in: db)
            try db.execute(sql: "UPDATE journal_applied SET seq = ? WHERE id = 1", arguments: [batch.lastSequence])
            return (
                batch.entries.count + batch.delivered.count + batch.unreadable, batch.lastSequence, batch.unreadable
            )
        }
    }

    /// The last journal row moved into the history.
    package func appliedJournalSequence() throws(ParleyError) -> Int64 {
        try database.read("reading the history journal position") { db in
            try Int64.fetchOne(db, sql: "SELECT seq FROM journal_applied WHERE id = 1") ?? 0
        }
    }

    /// Turns the deliveries of entries in `entries` into their delivery time (the first one
    /// wins), so they are written with the row instead of updating it after; returns the
    /// entries and the deliveries of entries not among them.
    package static func merge(
        _ entries: [HistoryEntry], _ delivered: [HistoryJournal.Delivery]
    ) -> (entries: [HistoryEntry], delivered: [HistoryJournal.Delivery]) {
        struct Key: Hashable {
            var sender: UserID
            var messageID: MessageID
            var recipient: UserID
        }
        guard !delivered.isEmpty else { return (entries, []) }
        var entries = entries
        var index: [Key: Int] = [:]
        index.reserveCapacity(entries.count)
        for (position, entry) in entries.enumerated() {
            index[Key(sender: entry.sender, messageID: entry.messageID, recipient: entry.recipient)] = position
        }
        var rest: [HistoryJournal.Delivery] = []
        for delivery in delivered {
            let key = Key(sender: delivery.sender, messageID: delivery.messageID, recipient: delivery.recipient)
            if let position = index[key] {
                if entries[position].deliveredAt == nil { entries[position].deliveredAt = delivery.at }
            } else {
                rest.append(delivery)
            }
        }
        return (entries, rest)
    }

    /// One page of `query`'s results; with `participant`, only the entries it sent or received.
    /// A page whose bodies pass `budget` bytes stops early, with a cursor to the rest.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidHistoryCursor` for a cursor this
    ///   store did not give, `invalidRequest` for a query that breaks the limits.
    package func search(
        _ query: HistoryQuery, participant: UserID? = nil, budget: Int = .max
    ) throws(ParleyError) -> HistoryPage {
        try query.validate()
        return try database.read("searching history") { db in
            try HistoryTable.search(query, participant: participant, budget: budget, in: db)
        }
    }

    /// Deletes the entries sent before `cutoff`, in batches of 10,000 (so recording is never
    /// held up for long). Returns how many it deleted.
    @discardableResult
    package func sweep(before cutoff: Date) throws(ParleyError) -> Int {
        var total = 0
        while true {
            let deleted = try database.write("sweeping history") { db in
                try HistoryTable.sweep(before: cutoff, batch: 10_000, in: db)
            }
            total += deleted
            if deleted < 10_000 { return total }
        }
    }

    /// The file's size in bytes with its WAL, after a checkpoint that moves the WAL into it.
    package func checkpointedSize() throws(ParleyError) -> Int64 {
        do {
            try database.pool.writeWithoutTransaction { db in
                _ = try Row.fetchAll(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            }
            var total: Int64 = 0
            for file in [path, path + "-wal"] where FileManager.default.fileExists(atPath: file) {
                let attributes = try FileManager.default.attributesOfItem(atPath: file)
                total += (attributes[.size] as? NSNumber)?.int64Value ?? 0
            }
            return total
        } catch {
            throw SQLiteDatabase.storageError("measuring the history file", error)
        }
    }

    /// How many entries the history holds.
    package func count() throws(ParleyError) -> Int {
        try database.read("counting history") { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM history") ?? 0 }
    }
}
