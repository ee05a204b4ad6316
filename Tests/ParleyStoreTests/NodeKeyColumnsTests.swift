import Foundation
import GRDB
import ParleyCore
import ParleyServerStore
import Testing

@Suite("Node keys in the user table")
struct NodeKeyColumnsTests {
    static let key: [UInt8] = Array(0..<91)

    /// A date as the store gives it back: whole milliseconds.
    static func rounded(_ date: Date) -> Date {
        Date(timeIntervalSince1970: Double(Int64((date.timeIntervalSince1970 * 1000).rounded())) / 1000)
    }

    @Test("a recorded node is read back by every user read and replaced by the next one")
    func recordAndRead() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("alice"), person("bob"))
            let recorded = try store.recordNode(
                for: ids[0],
                nodeID: "node-a",
                publicKey: Self.key,
                directAddresses: ["10.0.0.1:7421", "[::1]:7421"],
                allowsDirect: true,
                now: now
            )
            #expect(recorded.userID == ids[0])
            #expect(recorded.nodeID == "node-a")
            #expect(recorded.nodePublicKey == Self.key)
            #expect(recorded.directAddresses == ["10.0.0.1:7421", "[::1]:7421"])
            #expect(recorded.allowsDirectLinks)
            #expect(recorded.nodeKeyUpdatedAt == Self.rounded(now))

            #expect(try store.user(ids[0])?.info == recorded)
            #expect(try store.user(ids[0])?.passwordHash == "hash-alice")
            let found = try store.findUsers(UserQuery(), onlineUserIDs: [])
            #expect(found.users.map(\.nodeID) == ["node-a", nil])
            #expect(try store.updateUserInfo(ids[0], to: person("alice", first: "Alice")).nodeID == "node-a")

            let bob = try #require(try store.user(ids[1])?.info)
            #expect(bob.nodeID == nil && bob.nodePublicKey == nil && bob.nodeKeyUpdatedAt == nil)
            #expect(bob.directAddresses.isEmpty && !bob.allowsDirectLinks)

            let later = now.addingTimeInterval(60)
            let replaced = try store.recordNode(
                for: ids[0], nodeID: "node-b", publicKey: [1, 2, 3], directAddresses: [], allowsDirect: false,
                now: later
            )
            #expect(replaced.nodeID == "node-b")
            #expect(replaced.nodePublicKey == [1, 2, 3])
            #expect(replaced.directAddresses.isEmpty)
            #expect(!replaced.allowsDirectLinks)
            #expect(replaced.nodeKeyUpdatedAt == Self.rounded(later))

            let missing = #expect(throws: ParleyError.self) {
                try store.recordNode(
                    for: 4242, nodeID: "x", publicKey: [1], directAddresses: [], allowsDirect: false, now: now)
            }
            #expect(missing?.code == .userNotFound)
        }
    }

    @Test("a database from before the node columns is upgraded, its users without a node")
    func upgradesOldDatabase() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("alice"))
            // Turn the file back into a "v1" database.
            try withRawDatabase(path) { db in
                for column in ["node_id", "node_public_key", "direct_addresses", "allow_direct", "node_key_updated_at"]
                {
                    try db.execute(sql: "ALTER TABLE user DROP COLUMN \(column)")
                }
                try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = 'v2-node-keys'")
            }
            let reopened = try ServerStore(path: path)
            let alice = try #require(try reopened.user(ids[0])?.info)
            #expect(alice.userName == "alice")
            #expect(alice.nodeID == nil && alice.nodePublicKey == nil && alice.nodeKeyUpdatedAt == nil)
            #expect(alice.directAddresses.isEmpty && !alice.allowsDirectLinks)
            let recorded = try reopened.recordNode(
                for: ids[0], nodeID: "node-a", publicKey: Self.key, directAddresses: ["h:1"], allowsDirect: true,
                now: now
            )
            #expect(recorded.directAddresses == ["h:1"])
        }
    }

    @Test("a corrupt address list is a storage error, not a crash")
    func corruptAddresses() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("alice"))
            try store.recordNode(
                for: ids[0], nodeID: "node-a", publicKey: Self.key, directAddresses: ["h:1"], allowsDirect: true,
                now: now
            )
            try withRawDatabase(path) { db in
                try db.execute(sql: "UPDATE user SET direct_addresses = '{\"not\": \"a list\"}'")
            }
            let error = #expect(throws: ParleyError.self) { try store.user(ids[0]) }
            #expect(error?.code == .storageError)
        }
    }
}
