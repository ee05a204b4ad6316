import Foundation
import GRDB
import ParleyCore
import ParleyServerStore
import Testing

@Suite("Stored commands (docs/PROTOCOL.md section 24.5)")
struct StoredCommandTests {
    @Test("commands are kept per recipient in order, taken out once, and bounded")
    func storeAndTake() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("alice"), person("bob"))
            let (alice, bob) = (ids[0], ids[1])
            // Whole milliseconds, as the store keeps them.
            let storedAt = Date(timeIntervalSince1970: 1_700_000_000)
            let first = StoredCommand(sender: alice, name: "wake", payload: [1, 2], storedAt: storedAt)
            let second = StoredCommand(sender: .server, name: "sync", payload: [], storedAt: storedAt + 1)
            try store.storeCommand(first, for: bob, maximum: 2)
            try store.storeCommand(second, for: bob, maximum: 2)
            let full = #expect(throws: ParleyError.self) { try store.storeCommand(first, for: bob, maximum: 2) }
            #expect(full?.code == .recipientOffline)
            let unknown = #expect(throws: ParleyError.self) { try store.storeCommand(first, for: 424_242, maximum: 2) }
            #expect(unknown?.code == .userNotFound)

            #expect(try store.takeStoredCommands(for: alice).isEmpty)
            #expect(try store.takeStoredCommands(for: bob) == [first, second])
            #expect(try store.takeStoredCommands(for: bob).isEmpty)
        }
    }

    @Test("a corrupt stored command is a storage error and nothing is taken out")
    func corruptRow() throws {
        try withTemporaryStore { store, path in
            let bob = try store.register(person("bob"))[0]
            try store.storeCommand(
                StoredCommand(sender: 5, name: "n", payload: [9], storedAt: now), for: bob, maximum: 10)
            try withRawDatabase(path) { db in
                try db.execute(sql: "UPDATE stored_command SET sender = 'garbage'")
            }
            let error = #expect(throws: ParleyError.self) { try store.takeStoredCommands(for: bob) }
            #expect(error?.code == .storageError)
            let left = try withRawDatabase(path) { db in
                try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM stored_command")
            }
            #expect(left == 1)
        }
    }
}
