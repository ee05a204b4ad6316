import Foundation
import ParleyCore
import ParleyServerStore
import Testing

@Suite("Contact lists and chosen presence in the server store")
struct ContactStoreTests {
    @Test("add, update, list, watchers and remove, with each contact's directory record")
    func lifecycle() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(
                person("alice", first: "Alice", last: "Liddell"), person("bob", first: "Bob"), person("carol"))
            let (alice, bob, carol) = (ids[0], ids[1], ids[2])

            let added = try store.addContact(bob, to: alice, displayName: .firstName, maximum: 10, now: now)
            #expect(added.userID == bob)
            #expect(added.name == "Bob")
            #expect(added.info.userName == "bob")
            _ = try store.addContact(carol, to: alice, displayName: .custom("Caro"), maximum: 10, now: now)
            _ = try store.addContact(alice, to: carol, displayName: .fullName, maximum: 10, now: now)

            #expect(try store.contacts(of: alice).map(\.userID) == [bob, carol])
            #expect(try store.contacts(of: alice).map(\.name) == ["Bob", "Caro"])
            #expect(try store.contacts(of: carol).map(\.name) == ["Alice Liddell"])
            #expect(try store.contacts(of: bob).isEmpty)
            #expect(try store.watchers(of: carol) == [alice])
            #expect(try store.watchers(of: alice) == [carol])

            // Adding again changes the display name and keeps the entry (and its time).
            let later = now.addingTimeInterval(60)
            let again = try store.addContact(bob, to: alice, displayName: .userName, maximum: 10, now: later)
            #expect(again.name == "bob")
            #expect(again.addedAt == added.addedAt)
            let updated = try store.updateContact(carol, of: alice, displayName: .lastName)
            // carol has no last name: the user name stands in.
            #expect(updated.name == "carol")

            try store.removeContact(bob, from: alice)
            #expect(try store.contacts(of: alice).map(\.userID) == [carol])
            #expect(try store.watchers(of: bob).isEmpty)
        }
    }

    @Test("unknown users, oneself, missing entries and a full list are clear errors that change nothing")
    func refusals() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("alice"), person("bob"), person("carol"))
            let (alice, bob, carol) = (ids[0], ids[1], ids[2])

            expectError(.userNotFound) {
                try store.addContact(UserID(4242), to: alice, displayName: .userName, maximum: 10, now: now)
            }
            expectError(.invalidRequest) {
                try store.addContact(alice, to: alice, displayName: .userName, maximum: 10, now: now)
            }
            expectError(.contactNotFound) {
                try store.updateContact(bob, of: alice, displayName: .userName)
            }
            expectError(.contactNotFound) {
                try store.removeContact(bob, from: alice)
            }
            _ = try store.addContact(bob, to: alice, displayName: .userName, maximum: 1, now: now)
            expectError(.tooManyContacts) {
                try store.addContact(carol, to: alice, displayName: .userName, maximum: 1, now: now)
            }
            // Re-adding an entry already in a full list is an update, not a new entry.
            _ = try store.addContact(bob, to: alice, displayName: .firstName, maximum: 1, now: now)
            #expect(try store.contacts(of: alice).map(\.userID) == [bob])
        }
    }

    @Test("the chosen presence is online until set, kept, and read for many users in one query")
    func presenceChoice() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("alice"), person("bob"))
            #expect(
                try store.presenceChoices(of: ids + [UserID(4242)])
                    == [
                        ids[0]: PresenceChoice(state: .online, text: ""),
                        ids[1]: PresenceChoice(state: .online, text: ""),
                    ])
            try store.setPresenceChoice(PresenceChoice(state: .away, text: "at lunch"), for: ids[1])
            #expect(try store.presenceChoices(of: [ids[1]])[ids[1]] == PresenceChoice(state: .away, text: "at lunch"))
            expectError(.userNotFound) {
                try store.setPresenceChoice(PresenceChoice(state: .busy, text: ""), for: UserID(4242))
            }
        }
    }

    @Test("last logon and logoff times are recorded per user")
    func lastSeen() throws {
        try withTemporaryStore { store, _ in
            let alice = try store.register(person("alice"))[0]
            #expect(try store.lastSeen(of: alice) == (nil, nil))
            try store.recordSession(of: alice, isLogon: true, now: now)
            try store.recordSession(of: alice, isLogon: false, now: now.addingTimeInterval(5))
            let seen = try store.lastSeen(of: alice)
            #expect(seen.logon == now)
            #expect(seen.logoff == now.addingTimeInterval(5))
        }
    }

    @Test("the display-name rules resolve against the directory record and survive the wire numbering")
    func displayNames() throws {
        let info = UserInfo(userName: "al", firstName: "Alice", lastName: "Liddell")
        let rules: [ContactDisplayName] = [.userName, .firstName, .lastName, .fullName, .custom("Boss")]
        #expect(rules.map { $0.resolve(for: info) } == ["al", "Alice", "Liddell", "Alice Liddell", "Boss"])
        for rule in rules {
            #expect(ContactDisplayName(wireValue: rule.wireValue, customName: rule.customName) == rule)
        }
        #expect(ContactDisplayName(wireValue: 9, customName: "") == nil)
        expectError(.invalidRequest) { try ContactDisplayName.custom("").validate() }
        expectError(.invalidPresence) {
            try Presence.validateChoice(state: .away, text: String(repeating: "x", count: 257))
        }
        expectError(.invalidPresence) {
            try Presence.validateChoice(state: .offline, text: "")
        }
        expectError(.invalidPresence) {
            try Presence.validateChoice(state: .busy, text: "a\u{7}b")
        }
        try Presence.validateChoice(state: .busy, text: "in a meeting")
    }
}

/// Expects `body` to throw a ``ParleyError`` with `code` (whatever its message).
private func expectError(
    _ code: ParleyError.Code,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> some Any
) {
    let error = #expect(throws: ParleyError.self, sourceLocation: sourceLocation) { try body() }
    #expect(error?.code == code, sourceLocation: sourceLocation)
}
