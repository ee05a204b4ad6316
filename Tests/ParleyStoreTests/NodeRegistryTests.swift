import Foundation
import GRDB
import ParleyCore
import ParleyNodeStore
import ParleyTesting
import Testing

/// A fresh temporary data directory for a node registry, removed afterwards. Tests open (and
/// reopen) the registry in it themselves.
func withRegistryDirectory<T>(_ body: (_ dataDirectory: String) throws -> T) throws -> T {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("parley-registry-tests-\(UUID().uuidString)", isDirectory: true)
    defer {
        do {
            try FileManager.default.removeItem(at: directory)
        } catch {
            Issue.record("cannot remove \(directory.path): \(error)")
        }
    }
    // A nested path: the registry creates the missing directories.
    return try body(directory.appendingPathComponent("node-data").path)
}

/// A registry on a real SQLite file in a fresh temporary directory.
func withTemporaryRegistry<T>(_ body: (_ registry: NodeRegistry, _ path: String) throws -> T) throws -> T {
    try withRegistryDirectory { (directory) throws in
        let registry = try NodeRegistry(dataDirectory: directory)
        return try body(registry, registry.path)
    }
}

@Suite struct NodeRegistryTests {
    let later = now.addingTimeInterval(60)

    // MARK: Opening

    @Test func opensAFileInTheDataDirectoryInWALMode() throws {
        try withRegistryDirectory { (directory) throws in
            let registry = try NodeRegistry(dataDirectory: directory)
            #expect(registry.path == directory + "/parley-node.sqlite")
            #expect(FileManager.default.fileExists(atPath: registry.path))
            let (migrations, journalMode) = try withRawDatabase(registry.path) { db in
                (
                    try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier"),
                    try String.fetchOne(db, sql: "PRAGMA journal_mode")
                )
            }
            #expect(
                migrations == [
                    "v1-cached-nodes", "v1-cached-users", "v1-outbox", "v1-pinned-keys", "v2-node-links",
                    "v3-awaiting-receipt", "v4-node-inbox", "v5-node-contacts", "v6-node-history",
                    "v8-node-history-batched-fts",
                ]
            )
            #expect(journalMode == "wal")
        }
    }

    @Test func anUnusablePathIsAStorageError() throws {
        try withRegistryDirectory { (directory) throws in
            // The data directory is a regular file.
            try FileManager.default.createDirectory(
                atPath: (directory as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true
            )
            try Data("x".utf8).write(to: URL(fileURLWithPath: directory))
            let error = #expect(throws: ParleyError.self) { try NodeRegistry(dataDirectory: directory) }
            #expect(error?.code == .storageError)
        }
    }

    // MARK: Users

    @Test func recordingAUserUpsertsItAndKeepsProvenance() throws {
        try withTemporaryRegistry { (registry, _) throws in
            #expect(try registry.cachedUser(1042) == nil)
            var info = UserInfo(userID: 1042, userName: "  alice ", firstName: "Alice", isOnline: true)
            let first = try registry.record(user: info, nodeID: .named("node-a"), source: .discovery, seenAt: now)
            #expect(first.info.userName == "alice")  // validated: trimmed
            #expect(first.info.isOnline == false)  // never cached
            #expect(first.nodeID == .named("node-a"))
            #expect(first.source == .discovery)
            #expect(first.isVouchedByServer == false)
            #expect(first.lastSeen == now.roundedToMilliseconds)

            // Another discovery fact updates the fields; a nil node ID keeps the stored one.
            info.firstName = "Alicia"
            let second = try registry.record(user: info, nodeID: nil, source: .peer, seenAt: later)
            #expect(second.info.firstName == "Alicia")
            #expect(second.nodeID == .named("node-a"))
            #expect(second.source == .peer)
            #expect(second.lastSeen == later.roundedToMilliseconds)
            #expect(try registry.cachedUser(1042) == second)

            // Last seen never moves backwards.
            let older = try registry.record(user: info, nodeID: nil, source: .discovery, seenAt: now)
            #expect(older.lastSeen == later.roundedToMilliseconds)
        }
    }

    @Test func theServerOverridesDiscoveryAndDiscoveryNeverOverridesTheServer() throws {
        try withTemporaryRegistry { (registry, _) throws in
            try registry.record(
                user: UserInfo(userID: 7, userName: "mallory-says-bob", firstName: "Fake"),
                nodeID: .named("node-x"),
                source: .discovery,
                seenAt: now
            )
            let registeredAt = Date(timeIntervalSince1970: 1_600_000_000)
            let vouched = try registry.record(
                user: UserInfo(userID: 7, userName: "bob", firstName: "Bob", registeredAt: registeredAt),
                nodeID: .named("node-b"),
                source: .server,
                seenAt: now
            )
            #expect(vouched.info.userName == "bob")
            #expect(vouched.info.firstName == "Bob")
            #expect(vouched.info.registeredAt == registeredAt)
            #expect(vouched.nodeID == .named("node-b"))
            #expect(vouched.isVouchedByServer)

            // Discovery only refreshes last seen and the source now.
            let after = try registry.record(
                user: UserInfo(userID: 7, userName: "mallory-says-bob"),
                nodeID: .named("node-x"),
                source: .discovery,
                seenAt: later
            )
            #expect(after.info.userName == "bob")
            #expect(after.info.firstName == "Bob")
            #expect(after.nodeID == .named("node-b"))
            #expect(after.source == .discovery)
            #expect(after.isVouchedByServer)
            #expect(after.lastSeen == later.roundedToMilliseconds)

            // A newer server fact replaces it again.
            let renamed = try registry.record(
                user: UserInfo(userID: 7, userName: "robert"),
                nodeID: nil,
                source: .server,
                seenAt: later
            )
            #expect(renamed.info.userName == "robert")
            #expect(renamed.info.firstName == "")
            #expect(renamed.info.registeredAt == registeredAt)  // nil keeps the stored one
            #expect(renamed.nodeID == .named("node-b"))
            #expect(try registry.cachedUserIDs(named: "bob") == [])
            #expect(try registry.cachedUserIDs(named: "ROBERT") == [7])
        }
    }

    @Test func invalidUserFieldsAreNotCached() throws {
        try withTemporaryRegistry { (registry, _) throws in
            let error = #expect(throws: ParleyError.self) {
                try registry.record(user: UserInfo(userID: 9, userName: "   "), nodeID: nil, source: .peer, seenAt: now)
            }
            #expect(error?.code == .invalidRequest)
            #expect(try registry.cachedUser(9) == nil)
        }
    }

    @Test func findsCachedUsersLikeTheDirectory() throws {
        try withTemporaryRegistry { (registry, _) throws in
            let people: [(UserID, String, String)] = [
                (1001, "Émile", "Zola"), (1002, "emma", "Stone"), (1003, "ÉMILIE", "du Châtelet"),
                (1004, "bob_1", "100%"), (1005, "bobby", "Tables"),
            ]
            for (id, name, last) in people {
                try registry.record(
                    user: UserInfo(userID: id, userName: name, lastName: last),
                    nodeID: nil,
                    source: .discovery,
                    seenAt: now
                )
            }
            func find(_ query: UserQuery, online: Set<UserID> = []) throws -> [UserID] {
                try registry.findCachedUsers(query, onlineUserIDs: online).users.map(\.info.userID)
            }
            // Prefix, case-insensitive, non-ASCII folded (decomposed input finds precomposed).
            #expect(try find(UserQuery(filters: [.init(.userName, .prefix, "émil")])) == [1001, 1003])
            #expect(try find(UserQuery(filters: [.init(.userName, .prefix, "E\u{301}MIL")])) == [1001, 1003])
            #expect(try find(UserQuery(filters: [.init(.userName, .prefix, "em")])) == [1002])
            #expect(try find(UserQuery(filters: [.init(.lastName, .contains, "CHÂT")])) == [1003])
            #expect(try find(UserQuery(filters: [.init(.userName, .exact, "BOBBY")])) == [1005])
            // Literal wildcards.
            #expect(try find(UserQuery(filters: [.init(.userName, .prefix, "bob_")])) == [1004])
            #expect(try find(UserQuery(filters: [.init(.lastName, .contains, "%")])) == [1004])
            // Sort, descending, limit.
            let sorted = try registry.findCachedUsers(
                UserQuery(sort: .field(.lastName), descending: true, limit: 2)
            )
            #expect(sorted.users.map(\.info.lastName) == ["Zola", "Tables"])
            #expect(sorted.truncated)
            #expect(sorted.searchResult.users.map(\.userName) == ["Émile", "bobby"])
            // Online is unknown to the cache: false unless the caller knows better.
            #expect(try registry.findCachedUsers(UserQuery()).users.allSatisfy { !$0.info.isOnline })
            #expect(try find(UserQuery(online: .online)) == [])
            #expect(try find(UserQuery(online: .online), online: [1002]) == [1002])
            #expect(try registry.findCachedUsers(UserQuery(), onlineUserIDs: [1002]).users[1].info.isOnline)
            #expect(try find(UserQuery(online: .offline), online: [1002]) == [1001, 1003, 1004, 1005])
            #expect(try registry.cachedUserIDs(named: " émile ") == [1001])
        }
    }

    // MARK: Nodes

    @Test func recordsNodesWithTheirAddresses() throws {
        try withTemporaryRegistry { (registry, _) throws in
            let addresses = ["192.168.1.20:4711", "[fe80::1c2b:3cff:fe4d:5e6f%eth0]:4711", "[2001:db8::7]:4711"]
            let node = try registry.record(
                node: .named("node-a"),
                publicKey: [1, 2, 3],
                userID: 1042,
                userName: "alice",
                addresses: addresses,
                source: .discovery,
                seenAt: now
            )
            #expect(node.addresses == addresses)
            #expect(node.userID == 1042)
            #expect(node.userName == "alice")
            #expect(node.isVouchedByServer == false)
            #expect(try registry.node(.named("node-a")) == node)
            #expect(try registry.node(.named("node-b")) == nil)

            // Empty addresses keep the last ones; new ones replace them.
            let refreshed = try registry.record(
                node: .named("node-a"),
                publicKey: [1, 2, 3],
                userID: nil,
                userName: nil,
                addresses: [],
                source: .peer,
                seenAt: later
            )
            #expect(refreshed.addresses == addresses)
            #expect(refreshed.userID == 1042)
            #expect(refreshed.source == .peer)
            #expect(refreshed.lastSeen == later.roundedToMilliseconds)
            let moved = try registry.record(
                node: .named("node-a"),
                publicKey: [1, 2, 3],
                userID: nil,
                userName: nil,
                addresses: ["10.0.0.5:4711"],
                source: .discovery,
                seenAt: later
            )
            #expect(moved.addresses == ["10.0.0.5:4711"])

            try registry.record(
                node: .named("node-c"),
                publicKey: [9],
                userID: 1042,
                userName: nil,
                addresses: [],
                source: .discovery,
                seenAt: now
            )
            #expect(try registry.nodes(forUser: 1042).map(\.nodeID) == [.named("node-a"), .named("node-c")])
            #expect(try registry.nodes(forUser: 1043) == [])
            #expect(try registry.node(.named("node-c"))?.addresses == [])
        }
    }

    @Test func theServerVouchesForAUsersNodeKey() throws {
        try withTemporaryRegistry { (registry, _) throws in
            // Discovery claims first: no vouched key.
            try registry.record(
                node: .named("node-evil"),
                publicKey: [6, 6, 6],
                userID: 1042,
                userName: "alice",
                addresses: [],
                source: .discovery,
                seenAt: now
            )
            #expect(try registry.vouchedKey(forUser: 1042) == nil)

            try registry.record(
                node: .named("node-a"),
                publicKey: [1, 2, 3],
                userID: 1042,
                userName: "alice",
                addresses: [],
                source: .server,
                seenAt: now
            )
            #expect(
                try registry.vouchedKey(forUser: 1042)
                    == NodeRegistry.VouchedKey(
                        nodeID: .named("node-a"), publicKey: [1, 2, 3], vouchedAt: now.roundedToMilliseconds)
            )
            // A server-vouched node's key and user are not replaced by discovery.
            let claimed = try registry.record(
                node: .named("node-a"),
                publicKey: [6, 6, 6],
                userID: 666,
                userName: "mallory",
                addresses: ["10.0.0.66:4711"],
                source: .discovery,
                seenAt: later
            )
            #expect(claimed.publicKey == [1, 2, 3])
            #expect(claimed.userID == 1042)
            #expect(claimed.userName == "alice")
            #expect(claimed.addresses == ["10.0.0.66:4711"])
            #expect(claimed.isVouchedByServer)

            // The user moved to another node: the newer server answer wins, an older one does not.
            try registry.record(
                node: .named("node-b"),
                publicKey: [4, 5],
                userID: 1042,
                userName: "alice",
                addresses: [],
                source: .server,
                seenAt: later
            )
            try registry.record(
                node: .named("node-a"),
                publicKey: [1, 2, 3],
                userID: 1042,
                userName: "alice",
                addresses: [],
                source: .server,
                seenAt: now
            )
            #expect(try registry.vouchedKey(forUser: 1042)?.nodeID == .named("node-b"))
            #expect(try registry.vouchedKey(forUser: 1042)?.publicKey == [4, 5])
        }
    }

    @Test func invalidNodesAreRefused() throws {
        try withTemporaryRegistry { (registry, _) throws in
            func record(key: [UInt8] = [1], userName: String? = nil, addresses: [String] = []) throws {
                try registry.record(
                    node: .named("node-a"),
                    publicKey: key,
                    userID: nil,
                    userName: userName,
                    addresses: addresses,
                    source: .discovery,
                    seenAt: now
                )
            }
            let tooMany = (0...NodeRegistry.maximumAddressCount).map { "10.0.0.\($0):4711" }
            let tooLong = String(repeating: "a", count: NodeRegistry.maximumAddressLength) + ":1"
            for attempt in [
                { try record(key: []) },
                { try record(userName: String(repeating: "x", count: UserInfo.maximumFieldLength + 1)) },
                { try record(addresses: tooMany) },
                { try record(addresses: [tooLong]) },
                { try record(addresses: [""]) },
            ] as [() throws -> Void] {
                let error = #expect(throws: ParleyError.self) { try attempt() }
                #expect(error?.code == .invalidRequest)
            }
            #expect(try registry.node(.named("node-a")) == nil)
            try record(addresses: Array(tooMany.dropLast()))
            #expect(try registry.node(.named("node-a"))?.addresses.count == NodeRegistry.maximumAddressCount)
        }
    }

    // MARK: Restart

    @Test func everythingSurvivesReopening() throws {
        try withRegistryDirectory { (directory) throws in
            do {
                let registry = try NodeRegistry(dataDirectory: directory)
                try registry.record(
                    user: UserInfo(userID: 1042, userName: "alice"),
                    nodeID: .named("node-a"),
                    source: .server,
                    seenAt: now
                )
                try registry.record(
                    node: .named("node-a"),
                    publicKey: [1, 2, 3],
                    userID: 1042,
                    userName: "alice",
                    addresses: ["[fe80::1%en0]:4711"],
                    source: .server,
                    seenAt: now
                )
                #expect(
                    try registry.checkKey(
                        nodeID: .named("node-a"), publicKey: [1, 2, 3], vouchedByServer: true, now: now)
                        == .pinnedNow)
            }
            let reopened = try NodeRegistry(dataDirectory: directory)
            #expect(try reopened.cachedUser(1042)?.info.userName == "alice")
            #expect(try reopened.cachedUser(1042)?.isVouchedByServer == true)
            #expect(try reopened.node(.named("node-a"))?.addresses == ["[fe80::1%en0]:4711"])
            #expect(try reopened.vouchedKey(forUser: 1042)?.publicKey == [1, 2, 3])
            #expect(try reopened.pinnedKey(nodeID: .named("node-a"))?.isVouchedByServer == true)
            #expect(
                try reopened.checkKey(nodeID: .named("node-a"), publicKey: [1, 2, 3], vouchedByServer: false, now: now)
                    == .matches)
        }
    }
}

extension Date {
    /// The date as the registry gives it back: rounded to whole milliseconds.
    var roundedToMilliseconds: Date {
        Date(timeIntervalSince1970: (timeIntervalSince1970 * 1000).rounded() / 1000)
    }
}
