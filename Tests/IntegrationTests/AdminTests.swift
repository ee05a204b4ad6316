import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import Testing

@Suite("Admin API", .timeLimit(.minutes(1)))
struct AdminTests {
    @Test("users sorted and paged, sessions, counts with a guest, last seen")
    func usersSessionsCounts() async throws {
        try await withTestServer { server in
            try await withTestClients(4, of: server.clientConfiguration) { clients in
                let carol = try await clients[0].register("carol")
                let alice = try await clients[1].register("Alice")
                let bob = try await clients[2].register("bob")
                let admin = server.server

                #expect(try await admin.users().map(\.info.userID) == [carol, alice, bob])
                #expect(try await admin.users(sortedBy: .name).map(\.info.userName) == ["Alice", "bob", "carol"])
                #expect(
                    try await admin.users(sortedBy: .name, descending: true).map(\.info.userID) == [carol, bob, alice])
                #expect(try await admin.users(sortedBy: .name, offset: 1, limit: 1).map(\.info.userID) == [bob])
                // Logons are recorded off the event loop, right after they are answered.
                try await eventually("the logons to be recorded") {
                    try await admin.users().allSatisfy { $0.lastLogonAt != nil }
                }
                #expect(try await admin.users().allSatisfy { $0.info.isOnline })

                // The fourth client is connected but never logs on: a guest.
                try await eventually("the guest to be counted") { try await admin.counts().guests == 1 }
                #expect(try await admin.counts() == ParleyServer.Counts(users: 3, online: 3, guests: 1))

                let sessions = try admin.sessions()
                #expect(sessions.map(\.user) == [carol, alice, bob])
                #expect(Set(sessions.map(\.id)).count == 3)
                for session in sessions {
                    #expect(session.address.hasPrefix("127.0.0.1:"))
                    #expect(session.agent == server.clientConfiguration.agent)
                    #expect(session.connectedAt <= Date())
                }

                let online = try await admin.lastSeen(bob)
                #expect(online.isOnline)
                #expect(online.lastLogonAt != nil)
                #expect(online.lastLogoffAt == nil)
                try await clients[2].client.logOff()
                try await eventually("bob's logoff to be recorded") {
                    try await admin.lastSeen(bob).lastLogoffAt != nil
                }
                let offline = try await admin.lastSeen(bob)
                #expect(!offline.isOnline)
                #expect(try admin.sessions().map(\.user) == [carol, alice])
                #expect(try await admin.users(sortedBy: .lastLogon).count == 3)
                try await expectError(.userNotFound) { try await admin.lastSeen(424_242) }
            }
        }
    }

    @Test("a kicked client is told why and does not reconnect; kicking someone offline says so")
    func kick() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let admin = server.server

                #expect(try admin.kick(user: alice, reason: "maintenance until 18:00"))
                let reason = try await clients[0].waitForEvent("alice's disconnection") { event -> ParleyError? in
                    if case .connectionStateChanged(.disconnected(let error?)) = event { return error }
                    return nil
                }
                #expect(reason.code == .kicked)
                #expect(reason.message == "maintenance until 18:00")
                // The client stops (run() returns) instead of reconnecting into another kick.
                try await clients[0].waitForEvent("alice's client to stop") { event -> Bool? in
                    if case .connectionStateChanged(.stopped) = event { return true }
                    return nil
                }
                try await eventually("alice's session to end") {
                    try !admin.sessions().contains(where: { $0.user == alice })
                }
                #expect(try !admin.kick(user: alice, reason: "again"))

                // By session number.
                let session = try #require(try admin.sessions().first(where: { $0.user == bob }))
                #expect(try admin.kick(session: session.id, reason: "by session"))
                let bobReason = try await clients[1].waitForEvent("bob's disconnection") { event -> ParleyError? in
                    if case .connectionStateChanged(.disconnected(let error?)) = event { return error }
                    return nil
                }
                #expect(bobReason.code == .kicked)
                #expect(bobReason.message == "by session")
                // The server ends the session once its TLS closes, which can come after the client
                // saw the error.
                try await eventually("bob's session to end") {
                    try !admin.sessions().contains(where: { $0.user == bob })
                }
                #expect(try !admin.kick(session: session.id, reason: "gone"))
            }
        }
    }

    @Test("deleting a user removes their contacts, others' entries and their queued messages, and kicks them")
    func deleteUser() async throws {
        try await withTestServer { server in
            try await withTestClients(3, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice", password: "pw")
                let bob = try await clients[1].register("bob")
                let carol = try await clients[2].register("carol")
                let admin = server.server
                try await clients[0].client.addContact(bob)
                try await clients[1].client.addContact(alice)
                try await clients[1].client.addContact(carol)
                try await clients[0].client.logOff()
                // Waiting for alice (offline) and carol (online).
                _ = try await clients[1].client.send(.text("for both"), to: [alice, carol])
                try await clients[2].waitForMessages(1)

                try await admin.deleteUser(alice)
                try await expectError(.userNotFound) { try await admin.lastSeen(alice) }
                try await expectError(.userNotFound) { try await admin.deleteUser(alice) }
                #expect(try await admin.users().map(\.info.userID) == [bob, carol])
                #expect(try await clients[1].client.contacts().contacts.map(\.userID) == [carol])
                try await expectError(.invalidCredentials) {
                    try await clients[0].client.logOn(userID: alice, password: "pw")
                }
                // A new user with alice's ID gets nothing of hers.
                _ = try await clients[0].register("alice-2", password: "pw2", requestedUserID: alice)
                try await clients[0].client.logOff()
                let again = try await clients[0].client.logOn(userID: alice, password: "pw2")
                #expect(again.storedMessages == 0)
                #expect(try await clients[0].client.contacts().contacts.isEmpty)

                // An online user is kicked, told why.
                try await admin.deleteUser(carol, reason: "left the company")
                let reason = try await clients[2].waitForEvent("carol's disconnection") { event -> ParleyError? in
                    if case .connectionStateChanged(.disconnected(let error?)) = event { return error }
                    return nil
                }
                #expect(reason.code == .kicked)
                #expect(reason.message == "left the company")
                #expect(try await admin.users().map(\.info.userID) == [alice, bob])
            }
        }
    }

    @Test("a reserved ID cannot be registered until it is released; new IDs go above it")
    func reserveID() async throws {
        try await withTestServer { server in
            try await withTestClients(1, of: server.clientConfiguration) { clients in
                let admin = server.server
                let client = clients[0]
                let first = try await client.register("first")
                try await client.client.logOff()
                try await admin.reserveUserID(5000)
                try await admin.reserveUserID(5000)
                #expect(try await admin.reservedUserIDs() == [5000])
                try await expectError(.userAlreadyExists) { try await admin.reserveUserID(first) }
                let refused = try await expectError(.invalidUserID) {
                    try await client.register("wants-5000", requestedUserID: 5000)
                }
                #expect(refused.message.contains("reserved"))
                #expect(try await client.register("next") == 5001)
                try await client.client.logOff()

                #expect(try await admin.releaseUserID(5000))
                #expect(try await !admin.releaseUserID(5000))
                #expect(try await admin.reservedUserIDs().isEmpty)
                #expect(try await client.register("gets-5000", requestedUserID: 5000) == 5000)
            }
        }
    }

    @Test("the admin views and edits a user's contact list")
    func contacts() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let admin = server.server

                let added = try await admin.addContact(bob, to: alice, displayName: .custom("Bobby"))
                #expect(added.userID == bob)
                #expect(added.name == "Bobby")
                #expect(try await admin.contacts(of: alice).map(\.name) == ["Bobby"])
                #expect(try await clients[0].client.contacts().contacts.map(\.userID) == [bob])

                try await admin.removeContact(bob, from: alice)
                #expect(try await admin.contacts(of: alice).isEmpty)
                #expect(try await clients[0].client.contacts().contacts.isEmpty)
                try await expectError(.contactNotFound) { try await admin.removeContact(bob, from: alice) }
                try await expectError(.userNotFound) { try await admin.contacts(of: 424_242) }
                try await expectError(.userNotFound) { try await admin.addContact(424_242, to: alice) }
            }
        }
    }

    @Test("the server sends to several users and broadcasts to everyone online")
    func serverAsParticipant() async throws {
        try await withTestServer { server in
            try await withTestClients(3, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let carol = try await clients[2].register("carol")
                try await clients[2].client.logOff()
                let admin = server.server

                let several = try await admin.send(.text("to two"), to: [alice, carol])
                #expect(several.map(\.recipient) == [alice, carol])
                #expect(several.map(\.status) == [.acceptedOnline, .acceptedOffline])

                let notice = try await admin.broadcast(.text("notice: maintenance at 18:00"))
                #expect(Set(notice.map(\.recipient)) == [alice, bob])
                let toAlice = try await clients[0].waitForMessages(2)
                #expect(toAlice.map(\.body) == [.text("to two"), .text("notice: maintenance at 18:00")])
                #expect(toAlice.allSatisfy { $0.sender == .server })
                let toBob = try await clients[1].waitForMessages(1)
                #expect(toBob.map(\.body) == [.text("notice: maintenance at 18:00")])
            }
        }
    }
}
