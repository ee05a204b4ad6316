import Foundation
import ParleyCore
import ParleyServerStore
import Synchronization
import Testing

@Suite struct UserDirectoryTests {
    // MARK: Registration

    @Test func assignedIDsStartAtTheMinimumAndIncrease() throws {
        try withTemporaryStore { store, _ in
            let first = try store.registerUser(
                person("a"),
                passwordHash: "h",
                requestedID: nil,
                minimumID: 1000,
                now: now
            )
            let second = try store.registerUser(
                person("b"),
                passwordHash: "h",
                requestedID: nil,
                minimumID: 1000,
                now: now
            )
            #expect(first.userID == 1000)
            #expect(second.userID == 1001)
            #expect(first.registeredAt == Date(timeIntervalSince1970: 1_700_000_000.123))
            // A granted requested ID moves the next assigned one past it.
            _ = try store.registerUser(person("c"), passwordHash: "h", requestedID: 5000, minimumID: 1000, now: now)
            let fourth = try store.registerUser(
                person("d"),
                passwordHash: "h",
                requestedID: nil,
                minimumID: 1000,
                now: now
            )
            #expect(fourth.userID == 5001)
            // A higher minimum wins over the highest ID.
            let fifth = try store.registerUser(
                person("e"),
                passwordHash: "h",
                requestedID: nil,
                minimumID: 9000,
                now: now
            )
            #expect(fifth.userID == 9000)
        }
    }

    @Test func assignedIDsNeverIncludeTheServerAddress() throws {
        try withTemporaryStore { store, _ in
            let first = try store.registerUser(person("a"), passwordHash: "h", requestedID: nil, minimumID: 0, now: now)
            #expect(first.userID == 1)
        }
    }

    @Test func requestedIDs() throws {
        try withTemporaryStore { store, _ in
            let granted = try store.registerUser(
                person("alice"),
                passwordHash: "h",
                requestedID: 4242,
                minimumID: 1000,
                now: now
            )
            #expect(granted.userID == 4242)
            #expect(granted.userName == "alice")

            let taken = #expect(throws: ParleyError.self) {
                try store.registerUser(person("bob"), passwordHash: "h", requestedID: 4242, minimumID: 1000, now: now)
            }
            #expect(taken?.code == .userAlreadyExists)
            #expect(try store.user(4242)?.info.userName == "alice")

            let below = #expect(throws: ParleyError.self) {
                try store.registerUser(person("bob"), passwordHash: "h", requestedID: 999, minimumID: 1000, now: now)
            }
            #expect(below?.code == .invalidUserID)

            let server = #expect(throws: ParleyError.self) {
                try store.registerUser(person("bob"), passwordHash: "h", requestedID: .server, minimumID: 0, now: now)
            }
            #expect(server?.code == .invalidUserID)
        }
    }

    @Test func idsRunOut() throws {
        try withTemporaryStore { store, _ in
            let last = try store.registerUser(
                person("last"),
                passwordHash: "h",
                requestedID: UserID(UInt32.max),
                minimumID: 1000,
                now: now
            )
            #expect(last.userID.rawValue == UInt32.max)
            let error = #expect(throws: ParleyError.self) {
                try store.registerUser(person("next"), passwordHash: "h", requestedID: nil, minimumID: 1000, now: now)
            }
            #expect(error?.code == .userIDsExhausted)
        }
    }

    @Test func concurrentRegistrationsOfOneRequestedIDHaveOneWinner() throws {
        try withTemporaryStore { store, _ in
            let outcomes = Mutex<[Result<UserInfo, ParleyError>]>([])
            DispatchQueue.concurrentPerform(iterations: 20) { index in
                let outcome = Result { () throws(ParleyError) -> UserInfo in
                    try store.registerUser(
                        person("racer\(index)"),
                        passwordHash: "h",
                        requestedID: 7777,
                        minimumID: 1000,
                        now: now
                    )
                }
                outcomes.withLock { $0.append(outcome) }
            }
            let results = outcomes.withLock { $0 }
            let winners = results.compactMap { try? $0.get() }
            let losers = results.compactMap { result -> ParleyError? in
                if case .failure(let error) = result { return error }
                return nil
            }
            #expect(winners.count == 1)
            #expect(losers.count == 19)
            #expect(losers.allSatisfy { $0.code == .userAlreadyExists })
            let stored = try store.user(7777)
            #expect(stored?.info.userName == winners.first?.userName)
        }
    }

    @Test func concurrentAssignedRegistrationsGetDistinctIDs() throws {
        try withTemporaryStore { store, _ in
            let ids = Mutex<[UserID]>([])
            DispatchQueue.concurrentPerform(iterations: 50) { index in
                do {
                    let info = try store.registerUser(
                        person("user\(index)"),
                        passwordHash: "h",
                        requestedID: nil,
                        minimumID: 1000,
                        now: now
                    )
                    ids.withLock { $0.append(info.userID) }
                } catch {
                    Issue.record(error)
                }
            }
            let assigned = ids.withLock { $0 }.sorted()
            #expect(assigned == (1000..<1050).map { UserID($0) })
        }
    }

    @Test func twoStoresOnOneFileAssignDistinctIDs() throws {
        // Two connections pools, like two processes: SQLite's locks, not one writer queue, must
        // keep them apart.
        try withTemporaryStore { store, path in
            let other = try ServerStore(path: path)
            let ids = Mutex<[UserID]>([])
            DispatchQueue.concurrentPerform(iterations: 40) { index in
                do {
                    let info = try (index.isMultiple(of: 2) ? store : other).registerUser(
                        person("user\(index)"),
                        passwordHash: "h",
                        requestedID: nil,
                        minimumID: 1,
                        now: now
                    )
                    ids.withLock { $0.append(info.userID) }
                } catch {
                    Issue.record(error)
                }
            }
            #expect(ids.withLock { $0 }.sorted() == (1...40).map { UserID($0) })
        }
    }

    // MARK: Lookup and updates

    @Test func lookUpAndUpdate() throws {
        try withTemporaryStore { store, _ in
            let registered = try store.registerUser(
                person("alice", first: "Alice", last: "Liddell", organization: "Wonderland"),
                passwordHash: "old-hash",
                requestedID: nil,
                minimumID: 1000,
                now: now
            )
            #expect(try store.user(registered.userID) == StoredUser(info: registered, passwordHash: "old-hash"))
            #expect(try store.user(999) == nil)
            #expect(try store.userExists(registered.userID))
            #expect(try !store.userExists(999))
            #expect(try store.existingUserIDs(among: [999, registered.userID, 12345, registered.userID]) == [1000])
            #expect(try store.existingUserIDs(among: []) == [])

            let updated = try store.updateUserInfo(
                registered.userID,
                to: person("Alice2", first: "A.", department: "Tea Party", application: "croquet")
            )
            #expect(updated.userID == registered.userID)
            #expect(updated.userName == "Alice2")
            #expect(updated.organization == "")
            #expect(updated.department == "Tea Party")
            #expect(updated.registeredAt == registered.registeredAt)
            #expect(try store.user(registered.userID)?.info == updated)
            #expect(try store.userIDs(named: "alice2") == [registered.userID])
            #expect(try store.userIDs(named: "alice") == [])

            try store.updatePasswordHash(registered.userID, to: "new-hash")
            #expect(try store.user(registered.userID)?.passwordHash == "new-hash")

            let missingInfo = #expect(throws: ParleyError.self) {
                try store.updateUserInfo(999, to: person("nobody"))
            }
            #expect(missingInfo?.code == .userNotFound)
            let missingHash = #expect(throws: ParleyError.self) {
                try store.updatePasswordHash(999, to: "x")
            }
            #expect(missingHash?.code == .userNotFound)
        }
    }

    @Test func userNamesMatchCaseInsensitively() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("émile"), person("Bob"), person("BOB"), person("bobby"))
            #expect(try store.userIDs(named: "ÉMILE") == [ids[0]])
            // The same name typed with a combining accent.
            #expect(try store.userIDs(named: "E\u{301}mile") == [ids[0]])
            #expect(try store.userIDs(named: "bob") == [ids[1], ids[2]])
            #expect(try store.userIDs(named: "bo") == [])
        }
    }

    // MARK: Search

    @Test func findsByExactPrefixAndContains() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(
                person("alice", last: "Smith", organization: "Acme"),
                person("alfred", last: "Smithers", organization: "ACME Labs"),
                person("bob", last: "Blacksmith", organization: "Other"),
                person("Ærin", last: "Østergaard")
            )
            func find(_ filters: UserQuery.Filter...) throws -> [UserID] {
                try store.findUsers(UserQuery(filters: filters), onlineUserIDs: []).users.map(\.userID)
            }
            #expect(try find(.init(.lastName, .exact, "SMITH")) == [ids[0]])
            #expect(try find(.init(.lastName, .prefix, "smith")) == [ids[0], ids[1]])
            #expect(try find(.init(.lastName, .contains, "smith")) == [ids[0], ids[1], ids[2]])
            #expect(try find(.init(.userName, .prefix, "al"), .init(.organization, .exact, "acme")) == [ids[0]])
            #expect(try find(.init(.userName, .prefix, "æ")) == [ids[3]])
            #expect(try find(.init(.lastName, .contains, "ØSTER")) == [ids[3]])
            #expect(try find() == ids)
            #expect(try find(.init(.department, .exact, "")) == ids)
        }
    }

    @Test func likeWildcardsInValuesAreLiteral() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(
                person("500"),
                person("50%"),
                person("a_b"),
                person("axb"),
                person("back\\slash"),
                person("'; DROP TABLE user; --")
            )
            func find(_ match: UserQuery.Match, _ value: String) throws -> [UserID] {
                try store.findUsers(UserQuery(filters: [.init(.userName, match, value)]), onlineUserIDs: [])
                    .users.map(\.userID)
            }
            #expect(try find(.exact, "50%") == [ids[1]])
            #expect(try find(.prefix, "50%") == [ids[1]])
            #expect(try find(.contains, "0%") == [ids[1]])
            #expect(try find(.contains, "_") == [ids[2]])
            #expect(try find(.prefix, "a_") == [ids[2]])
            #expect(try find(.contains, "k\\s") == [ids[4]])
            #expect(try find(.contains, "\\") == [ids[4]])
            #expect(try find(.contains, "drop table") == [ids[5]])
            #expect(try store.userExists(ids[0]))
        }
    }

    @Test func filtersByPresence() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("a"), person("b"), person("c"), person("d"))
            let online: Set<UserID> = [ids[1], ids[3], 999_999]
            let onlineResult = try store.findUsers(UserQuery(online: .online), onlineUserIDs: online)
            #expect(onlineResult.users.map(\.userID) == [ids[1], ids[3]])
            #expect(onlineResult.users.allSatisfy { $0.isOnline })

            let offlineResult = try store.findUsers(UserQuery(online: .offline), onlineUserIDs: online)
            #expect(offlineResult.users.map(\.userID) == [ids[0], ids[2]])
            #expect(offlineResult.users.allSatisfy { !$0.isOnline })

            let anyResult = try store.findUsers(UserQuery(), onlineUserIDs: online)
            #expect(anyResult.users.map(\.isOnline) == [false, true, false, true])

            #expect(try store.findUsers(UserQuery(online: .online), onlineUserIDs: []).users == [])
            #expect(try store.findUsers(UserQuery(online: .offline), onlineUserIDs: []).users.count == 4)
        }
    }

    @Test func manyOnlineUsersTravelAsOneArgument() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("a"), person("b"))
            let online = Set((100_000..<120_000).map { UserID($0) }).union([ids[1]])
            let result = try store.findUsers(UserQuery(online: .online), onlineUserIDs: online)
            #expect(result.users.map(\.userID) == [ids[1]])
        }
    }

    @Test func sortsAndLimits() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(
                person("carol", organization: "b"),
                person("Alice", organization: "a"),
                person("bob", organization: "b"),
                person("dave", organization: "a")
            )
            func find(_ sort: UserQuery.SortKey, descending: Bool = false, limit: Int = 100) throws -> UserSearchResult
            {
                try store.findUsers(UserQuery(sort: sort, descending: descending, limit: limit), onlineUserIDs: [])
            }
            #expect(try find(.userID).users.map(\.userID) == ids)
            #expect(try find(.userID, descending: true).users.map(\.userID) == ids.reversed())
            #expect(try find(.field(.userName)).users.map(\.userName) == ["Alice", "bob", "carol", "dave"])
            #expect(
                try find(.field(.userName), descending: true).users.map(\.userName) == [
                    "dave", "carol", "bob", "Alice",
                ])
            // Ties are broken by user ID, in the sort's direction.
            #expect(try find(.field(.organization)).users.map(\.userID) == [ids[1], ids[3], ids[0], ids[2]])
            #expect(
                try find(.field(.organization), descending: true).users.map(\.userID) == [
                    ids[2], ids[0], ids[3], ids[1],
                ]
            )

            let page = try find(.field(.userName), limit: 2)
            #expect(page.users.map(\.userName) == ["Alice", "bob"])
            #expect(page.truncated)
            let exact = try find(.userID, limit: 4)
            #expect(exact.users.count == 4)
            #expect(!exact.truncated)
            // The limit is clamped to at least 1.
            let clamped = try find(.userID, limit: 0)
            #expect(clamped.users.map(\.userID) == [ids[0]])
            #expect(clamped.truncated)
        }
    }
}
