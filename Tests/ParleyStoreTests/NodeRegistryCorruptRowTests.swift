import Foundation
import GRDB
import ParleyCore
import ParleyNodeStore
import ParleyTesting
import Testing

/// Rows damaged on disk must surface as `.storageError`, never crash the node.
@Suite struct NodeRegistryCorruptRowTests {
    func expectStorageError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) {
        let error = #expect(throws: ParleyError.self, sourceLocation: sourceLocation) { try body() }
        #expect(error?.code == .storageError, sourceLocation: sourceLocation)
    }

    @Test func corruptCachedUsers() throws {
        try withTemporaryRegistry { (registry, path) throws in
            for (id, name) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] as [(UserID, String)] {
                try registry.record(
                    user: UserInfo(userID: id, userName: name), nodeID: nil, source: .server, seenAt: now)
            }
            try withRawDatabase(path) { db in
                try db.execute(sql: "UPDATE cached_user SET last_seen = 'garbage' WHERE user_id = 1")
                try db.execute(sql: "UPDATE cached_user SET source = 'rumour' WHERE user_id = 2")
                try db.execute(sql: "UPDATE cached_user SET first_name = x'00ff', server_vouched = 7 WHERE user_id = 3")
                try db.execute(sql: "UPDATE cached_user SET user_id = 5000000000 WHERE user_id = 4")
            }
            expectStorageError { try registry.cachedUser(1) }
            expectStorageError { try registry.cachedUser(2) }
            expectStorageError { try registry.cachedUser(3) }
            expectStorageError { try registry.cachedUserIDs(named: "d") }
            expectStorageError { try registry.findCachedUsers(UserQuery()) }
            expectStorageError {
                try registry.record(user: UserInfo(userID: 1, userName: "a"), nodeID: nil, source: .server, seenAt: now)
            }
        }
    }

    @Test func corruptNodesAndKeys() throws {
        try withTemporaryRegistry { (registry, path) throws in
            for node in ["n1", "n2", "n3"] {
                try registry.record(
                    node: .named(node),
                    publicKey: [1],
                    userID: 1042,
                    userName: nil,
                    addresses: ["10.0.0.1:4711"],
                    source: .server,
                    seenAt: now
                )
            }
            try registry.checkKey(nodeID: .named("n1"), publicKey: [1], vouchedByServer: false, now: now)
            try withRawDatabase(path) { db in
                try db.execute(
                    sql:
                        "UPDATE cached_node SET addresses = '{\"not\": \"a list\"}' WHERE node_id = '\(NodeID.named("n1"))'"
                )
                try db.execute(
                    sql: "UPDATE cached_node SET public_key = 'text' WHERE node_id = '\(NodeID.named("n2"))'")
                try db.execute(sql: "UPDATE cached_node SET user_id = -1 WHERE node_id = '\(NodeID.named("n3"))'")
                try db.execute(sql: "UPDATE vouched_key SET public_key = 'not a key'")
                try db.execute(sql: "UPDATE pinned_key SET public_key = 42")
            }
            expectStorageError { try registry.node(.named("n1")) }
            expectStorageError { try registry.node(.named("n2")) }
            expectStorageError { try registry.node(.named("n3")) }
            expectStorageError { try registry.nodes(forUser: 1042) }
            expectStorageError { try registry.vouchedKey(forUser: 1042) }
            expectStorageError { try registry.pinnedKey(nodeID: .named("n1")) }
            // A pin that cannot be read refuses, it does not pass.
            expectStorageError {
                try registry.checkKey(nodeID: .named("n1"), publicKey: [1], vouchedByServer: false, now: now)
            }
        }
    }

    @Test func aStoredNodeIDThatIsNotOneIsACorruptRow() throws {
        try withTemporaryRegistry { (registry, path) throws in
            try registry.record(
                node: .named("n1"), publicKey: [1], userID: 1042, userName: nil, addresses: [], source: .server,
                seenAt: now)
            try registry.enqueue(
                forNode: .named("n1"), messageID: 4, sender: 1000, isText: true, body: [1], createdAt: now)
            try withRawDatabase(path) { db in
                try db.execute(sql: "UPDATE cached_node SET node_id = 'not a node ID'")
                try db.execute(sql: "UPDATE vouched_key SET node_id = 'nope'")
                try db.execute(sql: "UPDATE node_outbox SET node_id = 'n1'")
            }
            expectStorageError { try registry.nodes(forUser: 1042) }
            expectStorageError { try registry.vouchedKey(forUser: 1042) }
            expectStorageError { try registry.pendingForNode(nil) }
            expectStorageError { try registry.outboxRecipients() }
        }
    }

    @Test func corruptOutboxRows() throws {
        try withTemporaryRegistry { (registry, path) throws in
            for id in 1...4 {
                try registry.enqueue(
                    OutboxMessage(
                        messageID: MessageID(UInt64(id)),
                        sender: 1000,
                        recipients: [UserID(UInt32(id))],
                        isText: true,
                        body: [1],
                        createdAt: now
                    )
                )
            }
            try withRawDatabase(path) { db in
                try db.execute(sql: "UPDATE outbox_message SET body = 42 WHERE message_id = 1")
                try db.execute(sql: "UPDATE outbox_message SET recipients = x'010203' WHERE message_id = 2")
                try db.execute(sql: "UPDATE outbox_message SET created_at = 'yesterday' WHERE message_id = 3")
                try db.execute(sql: "UPDATE outbox_recipient SET recipient = 'x' WHERE recipient = 4")
            }
            expectStorageError { try registry.pending(for: 1) }
            expectStorageError { try registry.pending(for: 2) }
            expectStorageError { try registry.pending(for: 3) }
            expectStorageError { try registry.pending(for: nil) }
            // A damaged entry can still be delivered, and then it is gone.
            #expect(try registry.markDelivered(messageID: 1, sender: 1000, recipient: 1, route: "server", at: now))
            #expect(try registry.pending(for: 1) == [])
        }
    }
}
