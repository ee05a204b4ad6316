import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import Testing

@Suite("Contacts and presence", .timeLimit(.minutes(1)))
struct ContactsTests {
    @Test("a contact list is kept by the server: add, update, list, remove, and clear errors")
    func contactList() async throws {
        try await withTestServer(ServerChanges { $0.maximumContacts = 2 }) { server in
            try await withTestClients(4, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].client.register(
                    UserInfo(userName: "alice"), password: "pw"
                ).userID
                let bob = try await clients[1].client.register(
                    UserInfo(userName: "bob", firstName: "Bob", lastName: "Brown"), password: "pw"
                ).userID
                let carol = try await clients[2].register("carol")
                let dave = try await clients[3].register("dave")
                let me = clients[0].client

                let added = try await me.addContact(bob, displayName: .firstName)
                #expect(added.userID == bob)
                #expect(added.name == "Bob")
                try await me.addContact(carol, displayName: .custom("Caro"))
                let list = try await me.contacts()
                #expect(list.maximum == 2)
                #expect(list.contacts.map(\.userID) == [bob, carol])
                #expect(list.contacts.map(\.name) == ["Bob", "Caro"])

                try await expectError(.userNotFound) { try await me.addContact(424_242) }
                try await expectError(.invalidRequest) { try await me.addContact(alice) }
                try await expectError(.tooManyContacts) { try await me.addContact(dave) }
                try await expectError(.invalidRequest) { try await me.addContact(dave, displayName: .custom("")) }

                #expect(try await me.updateContact(bob, displayName: .fullName).name == "Bob Brown")
                try await me.removeContact(carol)
                try await expectError(.contactNotFound) { try await me.removeContact(carol) }
                try await expectError(.contactNotFound) { try await me.updateContact(carol, displayName: .userName) }
                // Another connection of the same user sees the change.
                try await me.logOff()
                _ = try await clients[0].client.logOn(userID: alice, password: "pw")
                #expect(try await me.contacts().contacts.map(\.name) == ["Bob Brown"])
                // Other users' lists are their own.
                #expect(try await clients[1].client.contacts().contacts.isEmpty)
            }
        }
    }

    @Test("presence is pushed to watchers: a snapshot at logon, then every change, offline at logoff and close")
    func presence() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let (watcher, bobClient) = (clients[0], clients[1])
                let alice = try await watcher.register("alice", password: "pw")
                let bob = try await bobClient.register("bob", password: "pw")

                // The snapshot after alice's registration: no contacts yet.
                let first = try await watcher.waitForEvent("alice's first snapshot") { event -> PresenceUpdate? in
                    if case .presence(let update) = event, update.isSnapshot { return update }
                    return nil
                }
                #expect(first.contacts == [])

                // Adding a contact tells its presence at once.
                var seen = watcher.events.items.count
                try await watcher.client.addContact(bob)
                #expect(try await Self.presence(of: bob, at: watcher, after: seen).state == .online)

                seen = watcher.events.items.count
                try await bobClient.client.setPresence(.away, text: "at lunch")
                let away = try await Self.presence(of: bob, at: watcher, after: seen)
                #expect(away.state == .away)
                #expect(away.text == "at lunch")

                seen = watcher.events.items.count
                try await bobClient.client.logOff()
                #expect(try await Self.presence(of: bob, at: watcher, after: seen).state == .offline)

                // The chosen state is kept across logons.
                seen = watcher.events.items.count
                _ = try await bobClient.client.logOn(userID: bob, password: "pw")
                let back = try await Self.presence(of: bob, at: watcher, after: seen)
                #expect(back.state == .away)
                #expect(back.text == "at lunch")

                // alice logs on again: one snapshot with her list and bob's presence.
                seen = watcher.events.items.count
                try await watcher.client.logOff()
                _ = try await watcher.client.logOn(userID: alice, password: "pw")
                let snapshot = try await watcher.waitForEvent("alice's snapshot", after: seen) {
                    event -> PresenceUpdate? in
                    if case .presence(let update) = event, update.isSnapshot { return update }
                    return nil
                }
                #expect(snapshot.contacts?.map(\.userID) == [bob])
                #expect(snapshot.presences[bob]?.state == .away)

                // A connection that goes away without a LOGOFF shows offline too.
                seen = watcher.events.items.count
                bobClient.client.shutdown()
                #expect(try await Self.presence(of: bob, at: watcher, after: seen).state == .offline)
            }
        }
    }

    /// The next change of `user`'s presence that `client` received after its first `skip` events.
    private static func presence(of user: UserID, at client: TestClient, after skip: Int) async throws -> Presence {
        try await client.waitForEvent("a presence change of \(user)", after: skip) { event -> Presence? in
            if case .presence(let update) = event, !update.isSnapshot { return update.presences[user] }
            return nil
        }
    }
}
