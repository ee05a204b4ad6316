import Foundation
import GRDB
import NIOCore
import ParleyCore
import ParleyServerStore
import Testing

@Suite struct ServerStoreOpeningTests {
    @Test func migratesANewFile() throws {
        try withTemporaryStore { store, path in
            #expect(store.path == path)
            #expect(FileManager.default.fileExists(atPath: path))
            let (migrations, tables, journalMode) = try withRawDatabase(path) { db in
                (
                    try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier"),
                    try String.fetchSet(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'"),
                    try String.fetchOne(db, sql: "PRAGMA journal_mode")
                )
            }
            #expect(
                migrations == [
                    "v1-messages", "v1-users", "v2-node-keys", "v3-resumption-tokens", "v4-contacts-presence",
                    "v5-reserved-user-ids",
                    "v6-stored-commands", "v8-transfers",
                ])
            #expect(tables.isSuperset(of: ["user", "message", "delivery", "resumption_token", "reserved_user_id"]))
            #expect(journalMode == "wal")
        }
    }

    @Test func dataSurvivesReopening() throws {
        try withTemporaryStore { store, path in
            let alice = try store.registerUser(
                person("alice", first: "Alice"),
                passwordHash: "h1",
                requestedID: nil,
                minimumID: 1000,
                now: now
            )
            let bob = try store.registerUser(
                person("bob"),
                passwordHash: "h2",
                requestedID: nil,
                minimumID: 1000,
                now: now
            )
            let stored = try store.storeMessages(
                [
                    NewMessage(
                        messageID: 7,
                        sender: alice.userID,
                        recipients: [bob.userID],
                        allRecipients: [bob.userID],
                        isText: true,
                        body: ByteBuffer(string: "hello"),
                        sentAt: now,
                        wantsReceipt: true
                    )
                ],
                now: now
            )

            for durability in [ServerStore.Configuration.Durability.normal, .full] {
                let reopened = try ServerStore(path: path, configuration: .init(durability: durability))
                #expect(try reopened.user(alice.userID) == StoredUser(info: alice, passwordHash: "h1"))
                let pending = try reopened.pendingMessages(for: bob.userID, after: 0, limit: 10)
                #expect(pending.map(\.sequence) == [stored[0][0].sequence])
                #expect(pending.first?.body == Array("hello".utf8))
                // Assigned IDs go on from the highest stored one.
                let carol = try reopened.registerUser(
                    person("carol"),
                    passwordHash: "h3",
                    requestedID: nil,
                    minimumID: 1000,
                    now: now
                )
                #expect(carol.userID > bob.userID)
            }
        }
    }

    @Test func failsWithAStorageErrorWhereNoDatabaseCanBe() throws {
        try withTemporaryStore { _, path in
            // The store's file is a regular file: a database "inside" it cannot be created.
            let error = #expect(throws: ParleyError.self) {
                try ServerStore(path: path + "/nested/server.sqlite")
            }
            #expect(error?.code == .storageError)
        }
    }
}
