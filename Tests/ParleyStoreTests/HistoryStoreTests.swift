import Foundation
import GRDB
import ParleyCore
import ParleyServerStore
import Testing

/// A history store on a real SQLite file in a fresh temporary directory, removed afterwards.
private func withTemporaryHistory<T>(_ body: (_ store: HistoryStore, _ path: String) throws -> T) throws -> T {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("parley-history-tests-\(UUID().uuidString)", isDirectory: true)
    defer {
        do {
            try FileManager.default.removeItem(at: directory)
        } catch {
            Issue.record("cannot remove \(directory.path): \(error)")
        }
    }
    let path = directory.appendingPathComponent("data/\(HistoryStore.fileName)").path
    return try body(try HistoryStore(path: path), path)
}

@Suite("History store")
struct HistoryStoreTests {
    static let vocabulary = [
        "invoice", "Café", "cafe", "meeting", "Réunion", "deploy", "deployment", "Zürich", "lunch", "ready",
        "budget", "NOON", "review", "ship", "it",
    ]

    /// A fixed sequence of pseudo-random numbers, so the generated data is the same every run.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
    }

    /// Messages of pseudo-random words among five users, with every kind, some delivered.
    static func makeEntries(count: Int, start: Date) -> [HistoryEntry] {
        var generator = SeededGenerator(state: 42)
        return (0..<count).map { index in
            let kind: HistoryKind = index % 10 == 9 ? .binary : index % 10 == 8 ? .file : .text
            let text = (0..<Int.random(in: 1...6, using: &generator))
                .map { _ in vocabulary.randomElement(using: &generator) ?? "" }
                .joined(separator: index % 3 == 0 ? ", " : " ")
            return HistoryEntry(
                messageID: MessageID(UInt64(index + 1)),
                sender: UserID(UInt32(1000 + index % 5)),
                recipient: UserID(UInt32(1000 + (index + 1 + index / 5) % 5)),
                kind: kind,
                body: kind == .binary ? [UInt8(index & 0xFF), 0, 255] : Array(text.utf8),
                sentAt: start.addingTimeInterval(Double(index)),
                deliveredAt: index % 4 == 0 ? nil : start.addingTimeInterval(Double(index) + 0.5)
            )
        }
    }

    static func fold(_ text: String) -> String {
        text.folding(options: [.caseInsensitive, .diacriticInsensitive], locale: nil)
    }

    static func words(of text: String) -> [String] {
        fold(text).split { !$0.isLetter && !$0.isNumber }.map(String.init)
    }

    /// What the query means, computed in Swift over the entries (oldest first).
    static func expected(_ entries: [HistoryEntry], _ filter: HistoryQuery.TextFilter) -> [MessageID] {
        entries.filter { entry in
            guard let text = entry.text else { return false }
            switch filter.match {
            case .exact: return fold(text) == fold(filter.text)
            case .prefix: return fold(text).hasPrefix(fold(filter.text))
            case .contains:
                let (haystack, needle) = (words(of: text), words(of: filter.text))
                guard haystack.count >= needle.count else { return false }
                return (0...(haystack.count - needle.count)).contains {
                    Array(haystack[$0..<($0 + needle.count)]) == needle
                }
            }
        }.map(\.messageID)
    }

    /// Every page of `query`, oldest first.
    static func all(_ store: HistoryStore, _ query: HistoryQuery) throws -> [HistoryEntry] {
        var query = query
        query.order = .oldestFirst
        query.limit = 97
        var entries: [HistoryEntry] = []
        repeat {
            let page = try store.search(query)
            entries += page.entries
            query.cursor = page.nextCursor
        } while query.cursor != nil
        return entries
    }

    @Test("text filters (FTS contains, prefix, exact) match what they mean, ignoring case and diacritics")
    func textFilters() throws {
        try withTemporaryHistory { store, _ in
            let entries = Self.makeEntries(count: 3000, start: now)
            try store.record(entries)
            #expect(try store.count() == 3000)
            let filters: [HistoryQuery.TextFilter] = [
                .init(.contains, "invoice"), .init(.contains, "CAFE"), .init(.contains, "reunion"),
                .init(.contains, "ship it"), .init(.contains, "deploy"), .init(.contains, "zurich lunch"),
                .init(.prefix, "Cafe"), .init(.prefix, "meeting re"), .init(.prefix, "budget, no"),
                .init(.exact, "noon"), .init(.exact, "Zurich"), .init(.exact, "ship it"),
            ]
            for filter in filters {
                let found = try Self.all(store, HistoryQuery(text: filter)).map(\.messageID)
                let expected = Self.expected(entries, filter)
                #expect(found == expected, "\(filter)")
                #expect(!expected.isEmpty, "\(filter) matches nothing in the generated data")
            }
        }
    }

    @Test("participants, kinds, delivery and time filters, and cursor paging, against a reference")
    func otherFilters() throws {
        try withTemporaryHistory { store, _ in
            let entries = Self.makeEntries(count: 1000, start: now)
            try store.record(entries)
            let cases: [(HistoryQuery, (HistoryEntry) -> Bool)] = [
                (HistoryQuery(senders: [1001]), { $0.sender == 1001 }),
                (HistoryQuery(recipients: [1002, 1003]), { [1002, 1003].contains($0.recipient) }),
                (HistoryQuery(conversationWith: [1004]), { $0.sender == 1004 || $0.recipient == 1004 }),
                (HistoryQuery(kinds: [.binary, .file]), { $0.kind != .text }),
                (HistoryQuery(delivery: .undelivered), { $0.deliveredAt == nil }),
                (HistoryQuery(delivery: .delivered), { $0.deliveredAt != nil }),
                (
                    HistoryQuery(sentAfter: now + 100, sentBefore: now + 200),
                    { $0.sentAt >= now + 100 && $0.sentAt < now + 200 }
                ),
                (
                    HistoryQuery(deliveredAfter: now + 500),
                    { ($0.deliveredAt?.timeIntervalSince(now) ?? -1) >= 500 }
                ),
            ]
            for (query, holds) in cases {
                #expect(try Self.all(store, query).map(\.messageID) == entries.filter(holds).map(\.messageID))
            }
            // Newest first, a participant's view, pages of 10.
            var query = HistoryQuery(limit: 10)
            var seen: [HistoryEntry] = []
            repeat {
                let page = try store.search(query, participant: 1000)
                #expect(page.entries.count <= 10)
                seen += page.entries
                query.cursor = page.nextCursor
            } while query.cursor != nil
            let mine = entries.filter { $0.sender == 1000 || $0.recipient == 1000 }
            #expect(seen.map(\.messageID) == mine.reversed().map(\.messageID))
            #expect(seen.first?.body == mine.last?.body)
            #expect(throws: ParleyError.self) { try store.search(HistoryQuery(cursor: "h1.zz-")) }
            do {
                _ = try store.search(HistoryQuery(cursor: "elsewhere"))
                Issue.record("a foreign cursor was taken")
            } catch let error as ParleyError {
                #expect(error.code == .invalidHistoryCursor)
            }
        }
    }

    @Test("a resent message keeps one entry; deliveries keep their first time; the sweep deletes old entries")
    func recordingAndSweep() throws {
        try withTemporaryHistory { store, _ in
            let entry = HistoryEntry(
                messageID: 7, sender: 1000, recipient: 1001, kind: .text, body: Array("hi".utf8), sentAt: now)
            try store.record([entry, entry])
            try store.record([entry], delivered: [(sender: 1000, messageID: 7, recipient: 1001, at: now + 1)])
            try store.record([], delivered: [(sender: 1000, messageID: 7, recipient: 1001, at: now + 9)])
            let page = try store.search(HistoryQuery())
            #expect(page.entries.count == 1)
            #expect(page.entries.first?.deliveredAt == (now + 1).roundedToMilliseconds)
            #expect(page.nextCursor == nil)
            var old = entry
            old.messageID = 8
            old.sentAt = now - 86400
            try store.record([old])
            #expect(try store.search(HistoryQuery(text: .init(.contains, "hi"))).entries.count == 2)
            // Recorded again after its delivery, an entry is a second row (the server's message
            // store drops resent copies before history sees them; the index holds undelivered rows).
            var again = entry
            again.messageID = 9
            again.deliveredAt = now
            try store.record([again, again])
            #expect(
                try store.search(HistoryQuery(text: .init(.contains, "hi"))).entries.map(\.messageID) == [9, 9, 8, 7])
            #expect(try store.sweep(before: now - 3600) == 1)
            #expect(try store.search(HistoryQuery()).entries.map(\.messageID) == [9, 9, 7])
            // The swept entry's words left the full-text index with it.
            #expect(try store.search(HistoryQuery(text: .init(.contains, "hi"))).entries.map(\.messageID) == [9, 9, 7])
        }
    }

    @Test("rows recorded over many calls, resent undelivered ones among them, are each in the full-text index once")
    func indexAcrossCalls() throws {
        try withTemporaryHistory { store, _ in
            // Undelivered: the server keeps one row per entry while it is undelivered.
            let entries = Self.makeEntries(count: 1200, start: now).map { entry in
                var entry = entry
                entry.deliveredAt = nil
                return entry
            }
            var start = 0
            var size = 1
            while start < entries.count {
                let end = min(entries.count, start + size)
                // Each call also resends the previous call's last entry: it keeps its one row.
                try store.record((start > 0 ? [entries[start - 1]] : []) + Array(entries[start..<end]))
                start = end
                size = size * 2 + 1
            }
            #expect(try store.count() == entries.count)
            for filter: HistoryQuery.TextFilter in [.init(.contains, "invoice"), .init(.contains, "ship it")] {
                let found = try Self.all(store, HistoryQuery(text: filter)).map(\.messageID)
                #expect(found == Self.expected(entries, filter), "\(filter)")
            }
        }
    }

    @Test("a history file of the first schema (indexed by a trigger) keeps its words, and new rows are indexed")
    func upgradeFromTriggerIndexing() throws {
        try withTemporaryHistory { _, path in
            // Back to the first schema: the trigger that indexed every row, migration v2 not applied.
            try withRawDatabase(path) { db in
                try db.execute(
                    sql: """
                        CREATE TRIGGER history_text_insert AFTER INSERT ON history WHEN new.text IS NOT NULL BEGIN
                            INSERT INTO history_text (rowid, text) VALUES (new.id, new.text);
                        END;
                        DELETE FROM grdb_migrations WHERE identifier = 'v2-history-batched-fts';
                        INSERT INTO history (sender, message_id, recipient, kind, text, sent_at)
                            VALUES (1000, 1, 1001, 0, 'old invoice', 0);
                        """
                )
            }
            let reopened = try HistoryStore(path: path)
            let new = HistoryEntry(
                messageID: 2, sender: 1000, recipient: 1001, kind: .text, body: Array("new invoice".utf8), sentAt: now)
            try reopened.record([new])
            let found = try reopened.search(HistoryQuery(text: .init(.contains, "invoice"), order: .oldestFirst))
            // Once each: a row indexed by the trigger and again in bulk would be found twice.
            #expect(found.entries.map(\.messageID) == [1, 2])
        }
    }

    @Test("the journal is moved into the history once per row, in batches, across reopening, skipping damaged rows")
    func journalIndexing() throws {
        try withTemporaryHistory { store, path in
            let journalPath = URL(fileURLWithPath: path).deletingLastPathComponent()
                .appendingPathComponent(HistoryJournal.fileName).path
            let journal = try HistoryJournal(path: journalPath)
            let entries = Self.makeEntries(count: 500, start: now).map { entry in
                var entry = entry
                entry.deliveredAt = nil
                return entry
            }
            // Deliveries of some entries in the same append, of others in a later one.
            let delivered = entries.enumerated().filter { $0.offset % 3 == 0 }.map { position, entry in
                (
                    sender: entry.sender, messageID: entry.messageID, recipient: entry.recipient,
                    at: entry.sentAt + Double(position % 7)
                )
            }
            try journal.append(Array(entries[..<300]), delivered: Array(delivered.prefix(50)))
            try journal.append(Array(entries[300...]), delivered: Array(delivered.dropFirst(50)))
            // A damaged row between them: skipped and counted, the rest goes on.
            try withRawDatabase(journalPath) { db in
                try db.execute(
                    sql: """
                        INSERT INTO journal (seq, delivery, sender, message_id, recipient, kind, body, sent_at)
                        VALUES (100000, 0, 1, 2, 3, 9, x'00', 0)
                        """
                )
            }
            var moved = 0
            var unreadable = 0
            var last: Int64 = 0
            while true {
                let applied = try store.apply(journal, limit: 97)
                if applied.rows == 0 { break }
                moved += applied.rows
                unreadable += applied.unreadable
                last = applied.lastSequence
            }
            #expect(moved == entries.count + delivered.count + 1)
            #expect(unreadable == 1)
            #expect(try store.appliedJournalSequence() == last)
            #expect(try store.count() == entries.count)
            let recorded = try Self.all(store, HistoryQuery())
            let expectedDelivery = Dictionary(uniqueKeysWithValues: delivered.map { ($0.messageID, $0.at) })
            #expect(recorded.map(\.messageID) == entries.map(\.messageID))
            for entry in recorded {
                #expect(
                    entry.deliveredAt == expectedDelivery[entry.messageID]?.roundedToMilliseconds, "\(entry.messageID)")
            }
            // Applied rows are never applied again, also after reopening, trimmed or not.
            let reopened = try HistoryStore(path: path)
            #expect(try reopened.apply(journal, limit: 1000).rows == 0)
            try journal.deleteThrough(last)
            #expect(try journal.count() == 0)
            #expect(try reopened.count() == entries.count)
            // An emptied journal goes on numbering after its last row: new rows are applied.
            var later = entries[0]
            later.messageID = 100_001
            try journal.append([later], delivered: [])
            #expect(try reopened.apply(journal, limit: 1000).rows == 1)
            #expect(try reopened.count() == entries.count + 1)
            // A journal file made anew starts after what the history took.
            let replacement = journalPath + ".new"
            let fresh = try HistoryJournal(path: replacement)
            try fresh.continueAfter(try reopened.appliedJournalSequence())
            later.messageID = 100_002
            try fresh.append([later], delivered: [])
            #expect(try reopened.apply(fresh, limit: 1000).rows == 1)
            #expect(try reopened.count() == entries.count + 2)
        }
    }

    @Test("a corrupt row is a storage error, never a crash")
    func corruptRow() throws {
        try withTemporaryHistory { store, path in
            try withRawDatabase(path) { db in
                try db.execute(
                    sql:
                        "INSERT INTO history (sender, message_id, recipient, kind, text, sent_at) VALUES (1, 2, 3, 9, 'x', 0)"
                )
            }
            do {
                _ = try store.search(HistoryQuery())
                Issue.record("a row of kind 9 was read")
            } catch let error as ParleyError {
                #expect(error.code == .storageError)
            }
        }
    }
}
