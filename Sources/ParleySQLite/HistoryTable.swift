package import Foundation
package import GRDB
package import ParleyCore

/// The message history table and its full-text index, shared by the server's history file
/// (``HistoryStore``) and the node registry (``NodeRegistry/recordHistory(_:)``): schema,
/// writes, the retention sweep and the structured search.
///
/// One row per (sender, message ID, recipient). `id` (the rowid) is the order the history
/// recorded the rows in; pages are cut by it (keyset paging, never OFFSET), and the cursor is
/// the last row's `id`. `text` holds the text of text messages and the description of files
/// (NULL for binary messages), `body` the bytes of binary messages (NULL otherwise), so no
/// body is stored twice. `history_text` is an FTS5 index over `text` (external content: the
/// words only, not a second copy of the text): ``insert(_:into:)`` indexes a call's new rows with
/// one statement, and a trigger removes the words of deleted rows.
package enum HistoryTable {
    /// Creates the table, its indexes, the FTS5 index and the triggers that maintain it.
    package static func create(_ db: Database) throws {
        try db.execute(
            sql: """
                CREATE TABLE history (
                    id INTEGER PRIMARY KEY,
                    sender INTEGER NOT NULL,
                    message_id INTEGER NOT NULL,
                    recipient INTEGER NOT NULL,
                    kind INTEGER NOT NULL,
                    text TEXT,
                    body BLOB,
                    sent_at INTEGER NOT NULL,
                    delivered_at INTEGER,
                    route TEXT
                );
                CREATE UNIQUE INDEX history_by_message ON history (sender, message_id, recipient);
                CREATE INDEX history_by_sender ON history (sender, id);
                CREATE INDEX history_by_recipient ON history (recipient, id);
                CREATE INDEX history_by_sent_at ON history (sent_at);
                CREATE VIRTUAL TABLE history_text USING fts5 (
                    text, content = 'history', content_rowid = 'id',
                    tokenize = 'unicode61 remove_diacritics 2'
                );
                CREATE TRIGGER history_text_insert AFTER INSERT ON history WHEN new.text IS NOT NULL BEGIN
                    INSERT INTO history_text (rowid, text) VALUES (new.id, new.text);
                END;
                CREATE TRIGGER history_text_delete AFTER DELETE ON history WHEN old.text IS NOT NULL BEGIN
                    INSERT INTO history_text (history_text, rowid, text) VALUES ('delete', old.id, old.text);
                END;
                """
        )
    }

    /// Indexes new rows in bulk instead of by a trigger per row (migrations "v2-history-batched-fts"
    /// and "v8-node-history-batched-fts"). FTS5 writes its pending words to disk at every
    /// statement savepoint, so a trigger per row made a new index segment per row, and merging
    /// those segments cost about 60 µs per message; one `INSERT … SELECT` per transaction costs
    /// about 3 µs (measured with this machine's SQLite, 100,000 rows in batches of 8,192).
    package static func dropInsertTrigger(_ db: Database) throws {
        try db.execute(sql: "DROP TRIGGER IF EXISTS history_text_insert")
    }

    /// Which rows a recorded entry is matched against, to keep one row per entry.
    package enum Uniqueness {
        /// Every row (the node's registry: an entry is recorded again as its route changes).
        case allRows
        /// Rows not yet delivered (the server's history file, migration "v3-history-undelivered-index").
        ///
        /// The server records each accepted message once (its message store drops resent
        /// copies), so the index only has to find a delivery's row and catch a copy recorded
        /// again while undelivered. A partial index holds only the undelivered rows, a few
        /// thousand at most where the full index held every row ever kept: inserting into the
        /// full index, in the random order of message IDs, cost about 7 µs per message.
        case undeliveredRows
    }

    /// Replaces the server's full unique index by one over the undelivered rows (see
    /// ``Uniqueness/undeliveredRows``).
    package static func indexUndeliveredRowsOnly(_ db: Database) throws {
        try db.execute(
            sql: """
                DROP INDEX history_by_message;
                CREATE UNIQUE INDEX history_undelivered ON history (sender, message_id, recipient)
                    WHERE delivered_at IS NULL;
                """
        )
    }

    package static func kindValue(_ kind: HistoryKind) -> Int64 {
        switch kind {
        case .text: 0
        case .binary: 1
        case .file: 2
        }
    }

    /// Inserts entries; an entry already recorded (same sender, message ID and recipient) keeps
    /// its row, and takes the new route and, if it has one, the delivery time. New rows are
    /// added to the full-text index with one statement at the end.
    package static func insert(
        _ entries: some Sequence<HistoryEntry>, into db: Database, uniqueness: Uniqueness = .allRows
    ) throws {
        // Rows get increasing IDs: those above the largest now are this call's new rows.
        let lastBefore = try Int64.fetchOne(db, sql: "SELECT coalesce(max(id), 0) FROM history") ?? 0
        let conflictTarget =
            switch uniqueness {
            case .allRows: "(sender, message_id, recipient)"
            case .undeliveredRows: "(sender, message_id, recipient) WHERE delivered_at IS NULL"
            }
        // Bound in place (RawStatement): the server's history writes one row per message.
        let statement = try RawStatement(
            db,
            sql: """
                INSERT INTO history (sender, message_id, recipient, kind, text, body, sent_at, delivered_at, route)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT \(conflictTarget) DO UPDATE SET
                    route = coalesce(excluded.route, route),
                    delivered_at = coalesce(delivered_at, excluded.delivered_at)
                """
        )
        for entry in entries {
            statement.bind(1, entry.sender.storedValue)
            statement.bind(2, entry.messageID.storedValue)
            statement.bind(3, entry.recipient.storedValue)
            statement.bind(4, kindValue(entry.kind))
            if entry.kind == .binary {
                // Text is NULL: binary bodies are not indexed.
                statement.bindNull(5)
                statement.bind(6, bytes: entry.body)
            } else {
                // Invalid UTF-8 is stored repaired, as the text the search shows.
                statement.bind(5, text: String(decoding: entry.body, as: UTF8.self))
                statement.bindNull(6)
            }
            statement.bind(7, entry.sentAt.storedMilliseconds)
            if let deliveredAt = entry.deliveredAt {
                statement.bind(8, deliveredAt.storedMilliseconds)
            } else {
                statement.bindNull(8)
            }
            if let route = entry.route {
                statement.bind(9, text: route.rawValue)
            } else {
                statement.bindNull(9)
            }
            try statement.execute()
        }
        try db.execute(
            sql:
                "INSERT INTO history_text (rowid, text) SELECT id, text FROM history WHERE id > ? AND text IS NOT NULL",
            arguments: [lastBefore]
        )
    }

    /// Records that `recipient` acknowledged a message; a row already marked delivered keeps
    /// its first time.
    package static func markDelivered(
        _ deliveries: some Sequence<(sender: UserID, messageID: MessageID, recipient: UserID, at: Date)>,
        in db: Database
    ) throws {
        let statement = try db.cachedStatement(
            sql: """
                UPDATE history SET delivered_at = ?
                WHERE sender = ? AND message_id = ? AND recipient = ? AND delivered_at IS NULL
                """
        )
        for delivery in deliveries {
            try statement.execute(arguments: [
                delivery.at.storedMilliseconds, delivery.sender.storedValue, delivery.messageID.storedValue,
                delivery.recipient.storedValue,
            ])
        }
    }

    /// Deletes up to `batch` entries sent before `cutoff`; returns how many it deleted.
    package static func sweep(before cutoff: Date, batch: Int, in db: Database) throws -> Int {
        try db.execute(
            sql: "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE sent_at < ? LIMIT ?)",
            arguments: [cutoff.storedMilliseconds, batch]
        )
        return db.changesCount
    }

    /// The function the text filters compare with: case and diacritics folded, NFC.
    package static let fold = DatabaseFunction("parley_history_fold", argumentCount: 1, pure: true) { values in
        guard let text = String.fromDatabaseValue(values[0]) else { return nil }
        return text.historyFolded
    }

    /// One page of `query`'s results; with `participant`, only entries it sent or received.
    /// A page stops early (with a cursor) once its bodies pass `budget` bytes, so it fits in a
    /// frame; it always holds one entry if there is one.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidHistoryCursor` for a cursor this
    ///   table did not give; database errors as they come.
    package static func search(
        _ query: HistoryQuery, participant: UserID?, budget: Int = .max, in db: Database
    ) throws -> HistoryPage {
        let query = query.clamped
        var conditions: [String] = []
        var arguments: [(any DatabaseValueConvertible)?] = []
        if let participant {
            conditions.append("(h.sender = ? OR h.recipient = ?)")
            arguments += [participant.storedValue, participant.storedValue]
        }
        if !query.senders.isEmpty {
            conditions.append("h.sender IN (SELECT value FROM json_each(?))")
            arguments.append(query.senders.jsonArray)
        }
        if !query.recipients.isEmpty {
            conditions.append("h.recipient IN (SELECT value FROM json_each(?))")
            arguments.append(query.recipients.jsonArray)
        }
        if !query.conversationWith.isEmpty {
            conditions.append(
                "(h.sender IN (SELECT value FROM json_each(?)) OR h.recipient IN (SELECT value FROM json_each(?)))")
            arguments += [query.conversationWith.jsonArray, query.conversationWith.jsonArray]
        }
        if let sentAfter = query.sentAfter {
            conditions.append("h.sent_at >= ?")
            arguments.append(sentAfter.storedMilliseconds)
        }
        if let sentBefore = query.sentBefore {
            conditions.append("h.sent_at < ?")
            arguments.append(sentBefore.storedMilliseconds)
        }
        if let deliveredAfter = query.deliveredAfter {
            conditions.append("h.delivered_at >= ?")
            arguments.append(deliveredAfter.storedMilliseconds)
        }
        if let deliveredBefore = query.deliveredBefore {
            conditions.append("h.delivered_at < ?")
            arguments.append(deliveredBefore.storedMilliseconds)
        }
        switch query.delivery {
        case .any: break
        case .delivered: conditions.append("h.delivered_at IS NOT NULL")
        case .undelivered: conditions.append("h.delivered_at IS NULL")
        }
        if !query.kinds.isEmpty {
            conditions.append(
                "h.kind IN (\(query.kinds.map { String(kindValue($0)) }.sorted().joined(separator: ",")))")
        }
        let descending = query.order == .newestFirst
        if let cursor = query.cursor {
            conditions.append(descending ? "h.id < ?" : "h.id > ?")
            arguments.append(try Self.cursorValue(cursor))
        }
        var from = "history AS h"
        var orderColumn = "h.id"
        if let filter = query.text {
            let folded = filter.text.historyFolded
            let match = Self.ftsExpression(filter)
            let narrowed =
                participant != nil || !query.senders.isEmpty || !query.recipients.isEmpty
                || !query.conversationWith.isEmpty
            if let match, narrowed {
                // A user's rows drive the search (measured 4 times faster than scanning the
                // word's matches for that user's): the matches are listed once, and `+` keeps
                // SQLite from turning the list into rowid lookups.
                conditions.append("+h.id IN (SELECT rowid FROM history_text WHERE history_text MATCH ?)")
                arguments.append(match)
            } else if let match {
                // The full-text index drives the search, in rowid order, so a page stops early.
                from = "history_text JOIN history AS h ON h.id = history_text.rowid"
                orderColumn = "history_text.rowid"
                conditions.append("history_text MATCH ?")
                arguments.append(match)
            } else {
                conditions.append("h.text IS NOT NULL")
            }
            switch filter.match {
            case .exact:
                conditions.append("parley_history_fold(h.text) = ?")
                arguments.append(folded)
            case .prefix:
                conditions.append("instr(parley_history_fold(h.text), ?) = 1")
                arguments.append(folded)
            case .contains where match == nil:
                // No word to look up (only punctuation): a scan, by substring.
                conditions.append("instr(parley_history_fold(h.text), ?) > 0")
                arguments.append(folded)
            case .contains:
                break
            }
        }
        var sql = """
            SELECT h.id, h.sender, h.message_id, h.recipient, h.kind, h.text, h.body, h.sent_at,
                h.delivered_at, h.route
            FROM \(from)
            """
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        sql += " ORDER BY \(orderColumn) \(descending ? "DESC" : "ASC") LIMIT ?"
        arguments.append(query.limit + 1)
        db.add(function: fold)
        let rows = try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments))
        var entries: [HistoryEntry] = []
        var lastID: Int64 = 0
        var bytes = 0
        for row in rows.prefix(query.limit) {
            let entry = try Self.entry(row)
            bytes += entry.body.count + 64
            if !entries.isEmpty, bytes > budget { break }
            lastID = try row.int64(0, "history.id")
            entries.append(entry)
        }
        let more = rows.count > entries.count
        return HistoryPage(entries: entries, nextCursor: more ? Self.cursor(lastID) : nil)
    }

    /// The kind stored as ``kindValue(_:)`` in column `index`.
    package static func kind(_ row: Row, _ index: Int, _ column: StaticString) throws -> HistoryKind {
        switch try row.int64(index, column) {
        case 0: .text
        case 1: .binary
        case 2: .file
        case let other: throw Row.corrupt(column, other.databaseValue)
        }
    }

    private static func entry(_ row: Row) throws -> HistoryEntry {
        let kind = try Self.kind(row, 4, "history.kind")
        let body = kind == .binary ? try row.bytes(6, "history.body") : Array(try row.text(5, "history.text").utf8)
        let delivered = try row.decode(DatabaseValue.self, atIndex: 8)
        let route = try row.decode(DatabaseValue.self, atIndex: 9)
        var entry = HistoryEntry(
            messageID: try row.messageID(2, "history.message_id"),
            sender: try row.userID(1, "history.sender"),
            recipient: try row.userID(3, "history.recipient"),
            kind: kind,
            body: body,
            sentAt: try row.date(7, "history.sent_at")
        )
        if !delivered.isNull { entry.deliveredAt = try row.date(8, "history.delivered_at") }
        if !route.isNull {
            guard let value = String.fromDatabaseValue(route), let known = HistoryEntry.Route(rawValue: value) else {
                throw Row.corrupt("history.route", route)
            }
            entry.route = known
        }
        return entry
    }

    /// The FTS5 query for a text filter, or nil when the text has no word to look up.
    ///
    /// The filter's text becomes one quoted phrase (quotes doubled), so nothing in it is FTS5
    /// syntax: `contains` looks for the words in order; `prefix` anchors the phrase at the
    /// start (`^`) with its last word a prefix; `exact` anchors it. `prefix` and `exact` are
    /// then checked exactly on the folded text (the index only narrows).
    package static func ftsExpression(_ filter: HistoryQuery.TextFilter) -> String? {
        let hasWord = filter.text.unicodeScalars.contains {
            $0.properties.isAlphabetic || $0.properties.numericType != nil
        }
        guard hasWord else { return nil }
        let phrase = "\"" + filter.text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        switch filter.match {
        case .contains: return phrase
        case .prefix: return "^" + phrase + " *"
        case .exact: return "^" + phrase
        }
    }

    /// The opaque cursor after the row `id`.
    package static func cursor(_ id: Int64) -> String {
        "h1." + String(id, radix: 36)
    }

    package static func cursorValue(_ cursor: String) throws(ParleyError) -> Int64 {
        guard cursor.hasPrefix("h1."), let id = Int64(cursor.dropFirst(3), radix: 36), id > 0 else {
            throw ParleyError(code: .invalidHistoryCursor, message: "\"\(cursor)\" is not a history cursor")
        }
        return id
    }
}

extension String {
    /// The form history text filters compare: case and diacritics folded, then NFC.
    package var historyFolded: String {
        folding(options: [.caseInsensitive, .diacriticInsensitive], locale: nil).precomposedStringWithCanonicalMapping
    }
}
