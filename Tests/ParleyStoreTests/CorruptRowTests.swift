import Foundation
import GRDB
import NIOCore
import ParleyCore
import ParleyServerStore
import Testing

/// Rows damaged on disk must surface as `.storageError`, never crash the server.
@Suite struct CorruptRowTests {
    func expectStorageError<T>(_ body: () throws -> T, sourceLocation: SourceLocation = #_sourceLocation) {
        let error = #expect(throws: ParleyError.self, sourceLocation: sourceLocation) { try body() }
        #expect(error?.code == .storageError, sourceLocation: sourceLocation)
    }

    @Test func corruptUserRows() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("a"), person("b"), person("c"))
            try withRawDatabase(path) { db in
                try db.execute(
                    sql: "UPDATE user SET registered_at = 'garbage' WHERE user_id = ?", arguments: [ids[0].rawValue])
                try db.execute(
                    sql: "UPDATE user SET first_name = x'00ff' WHERE user_id = ?", arguments: [ids[1].rawValue])
            }
            expectStorageError { try store.user(ids[0]) }
            expectStorageError { try store.user(ids[1]) }
            expectStorageError { try store.findUsers(UserQuery(), onlineUserIDs: []) }
            expectStorageError { try store.updateUserInfo(ids[0], to: person("a2")) }
            // Untouched rows still read.
            #expect(try store.user(ids[2])?.info.userName == "c")
        }
    }

    @Test func outOfRangeIDs() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("a"))
            try withRawDatabase(path) { db in
                try db.execute(
                    sql: """
                        INSERT INTO user
                        SELECT 5000000000, user_name, first_name, last_name, organization, department, application,
                            user_name_folded, first_name_folded, last_name_folded, organization_folded,
                            department_folded, application_folded, password_hash, registered_at,
                            node_id, node_public_key, direct_addresses, allow_direct, node_key_updated_at,
                            presence_state, presence_text, last_logon_at, last_logoff_at
                        FROM user WHERE user_id = ?
                        """,
                    arguments: [ids[0].rawValue]
                )
            }
            expectStorageError { try store.userIDs(named: "a") }
            expectStorageError { try store.findUsers(UserQuery(), onlineUserIDs: []) }
            // No ID is left above the corrupt one.
            let error = #expect(throws: ParleyError.self) {
                try store.registerUser(person("b"), passwordHash: "h", requestedID: nil, minimumID: 1, now: now)
            }
            #expect(error?.code == .userIDsExhausted)
        }
    }

    @Test func corruptMessageRows() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("a"), person("b"), person("c"), person("d"))
            let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3])
            func message(_ id: MessageID, to recipient: UserID) -> NewMessage {
                NewMessage(
                    messageID: id,
                    sender: a,
                    recipients: [recipient],
                    allRecipients: [recipient],
                    isText: true,
                    body: ByteBuffer(bytes: [1]),
                    sentAt: now,
                    wantsReceipt: false
                )
            }
            _ = try store.storeMessages(
                [message(1, to: a), message(2, to: b), message(3, to: c), message(4, to: d)],
                now: now
            )
            try withRawDatabase(path) { db in
                try db.execute(sql: "UPDATE message SET body = 42 WHERE message_id = 1")
                try db.execute(sql: "UPDATE message SET recipients = x'010203' WHERE message_id = 2")
                try db.execute(sql: "UPDATE message SET sent_at = 'yesterday', is_text = 7 WHERE message_id = 3")
                try db.execute(sql: "DELETE FROM message WHERE message_id = 4")
            }
            expectStorageError { try store.pendingMessages(for: a, after: 0, limit: 10) }
            expectStorageError { try store.pendingMessages(for: b, after: 0, limit: 10) }
            expectStorageError { try store.pendingMessages(for: c, after: 0, limit: 10) }
            expectStorageError { try store.pendingMessages(for: d, after: 0, limit: 10) }
            expectStorageError { try store.acknowledge(recipient: d, messages: [(a, 4)], now: now) }
            // The message whose row is intact but body corrupt can still be acknowledged.
            #expect(try store.acknowledge(recipient: a, messages: [(a, 1)], now: now).count == 1)
            #expect(try store.pendingMessages(for: a, after: 0, limit: 10) == [])
        }
    }
}
