import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import Testing

@Suite("Directory", .timeLimit(.minutes(1)))
struct DirectoryTests {
    @Test("user info carries the online status; users update their own info")
    func userInfoAndUpdate() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].client.register(
                    UserInfo(userName: "alice", firstName: "Alice", lastName: "Liddell", organization: "Wonderland"),
                    password: "pw"
                ).userID
                let bob = try await clients[1].register("bob")

                let seen = try await clients[1].client.userInfo(alice)
                #expect(seen.userID == alice)
                #expect(seen.userName == "alice")
                #expect(seen.lastName == "Liddell")
                #expect(seen.organization == "Wonderland")
                #expect(seen.isOnline)
                #expect(seen.registeredAt != nil)

                let updated = try await clients[0].client.updateUserInfo(
                    UserInfo(userID: bob, userName: " Alice L. ", department: "Tea parties", application: "tests")
                )
                // The ID in the request is ignored: users only change themselves.
                #expect(updated.userID == alice)
                #expect(updated.userName == "Alice L.")
                #expect(updated.firstName == "")
                #expect(updated.department == "Tea parties")
                #expect(updated.isOnline)
                #expect(try await clients[1].client.userInfo(alice).department == "Tea parties")
                #expect(try await clients[1].client.userInfo(bob).userName == "bob")

                try await expectError(.invalidRequest) {
                    try await clients[0].client.updateUserInfo(UserInfo(userName: ""))
                }
                try await expectError(.invalidRequest) {
                    try await clients[0].client.updateUserInfo(
                        UserInfo(userName: "ok", lastName: String(repeating: "x", count: 65))
                    )
                }
                try await expectError(.userNotFound) { try await clients[0].client.userInfo(424_242) }
                try await expectError(.userNotFound) { try await clients[0].client.isOnline(424_242) }

                try await clients[0].client.logOff()
                #expect(try await !clients[1].client.userInfo(alice).isOnline)
            }
        }
    }

    @Test("a changed password is the one that logs on")
    func changePassword() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice", password: "old")
                try await expectError(.invalidCredentials) {
                    try await clients[0].client.changePassword(from: "wrong", to: "new")
                }
                try await expectError(.invalidRequest) {
                    try await clients[0].client.changePassword(from: "old", to: "")
                }
                try await clients[0].client.changePassword(from: "old", to: "new")
                try await clients[0].client.logOff()

                try await expectError(.invalidCredentials) {
                    try await clients[1].client.logOn(userID: alice, password: "old")
                }
                try await clients[1].client.logOn(userID: alice, password: "new")
            }
        }
    }

    @Test("user IDs are found by name, case-insensitively, ascending")
    func findUserIDs() async throws {
        try await withTestServer { server in
            try await withTestClient(of: server.clientConfiguration) { test in
                var ids: [UserID] = []
                for name in ["Alice", "bob", "ALICE", "alicia"] {
                    ids.append(try await test.register(name))
                    try await test.client.logOff()
                }
                #expect(try await test.client.findUserIDs(named: "alice") == [ids[0], ids[2]])
                #expect(try await test.client.findUserIDs(named: "  BOB ") == [ids[1]])
                #expect(try await test.client.findUserIDs(named: "ali").isEmpty)
                #expect(try await test.client.findUserIDs(named: "").isEmpty)
            }
        }
    }

    @Test("user search filters, sorts, limits and reports truncation")
    func findUsers() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let people = [
                    UserInfo(userName: "ann", lastName: "Zeller", organization: "Acme Corp", department: "Sales"),
                    UserInfo(userName: "andy", lastName: "Young", organization: "ACME labs", department: "R&D"),
                    UserInfo(userName: "bert", lastName: "Xu", organization: "Globex", department: "Sales"),
                    UserInfo(userName: "anna", lastName: "Walker", organization: "acme", department: "Sales"),
                    UserInfo(userName: "50%_off", lastName: "Vance", organization: "Initech"),
                ]
                var ids: [UserID] = []
                for person in people {
                    ids.append(try await clients[0].client.register(person, password: "pw").userID)
                    try await clients[0].client.logOff()
                }
                // andy and bert are online.
                try await clients[0].client.logOn(userID: ids[1], password: "pw")
                try await clients[1].client.logOn(userID: ids[2], password: "pw")
                let client = clients[1].client

                let all = try await client.findUsers(UserQuery())
                #expect(all.users.map(\.userID) == ids)
                #expect(!all.truncated)
                #expect(all.users.map(\.isOnline) == [false, true, true, false, false])

                let acme = try await client.findUsers(UserQuery(filters: [.init(.organization, .prefix, "acme")]))
                #expect(acme.users.map(\.userName) == ["ann", "andy", "anna"])

                let acmeSales = try await client.findUsers(
                    UserQuery(filters: [.init(.organization, .contains, "CME"), .init(.department, .exact, "sales")])
                )
                #expect(acmeSales.users.map(\.userName) == ["ann", "anna"])

                // % and _ are literal characters, not wildcards.
                let literal = try await client.findUsers(UserQuery(filters: [.init(.userName, .contains, "%_")]))
                #expect(literal.users.map(\.userName) == ["50%_off"])
                #expect(
                    try await client.findUsers(UserQuery(filters: [.init(.userName, .contains, "n%")])).users.isEmpty)

                let online = try await client.findUsers(UserQuery(online: .online))
                #expect(online.users.map(\.userName) == ["andy", "bert"])
                #expect(online.users.allSatisfy { $0.isOnline })
                let offline = try await client.findUsers(UserQuery(online: .offline))
                #expect(offline.users.map(\.userName) == ["ann", "anna", "50%_off"])

                let byLastName = try await client.findUsers(UserQuery(sort: .field(.lastName)))
                #expect(byLastName.users.map(\.lastName) == ["Vance", "Walker", "Xu", "Young", "Zeller"])
                let descending = try await client.findUsers(
                    UserQuery(sort: .field(.lastName), descending: true, limit: 2))
                #expect(descending.users.map(\.lastName) == ["Zeller", "Young"])
                #expect(descending.truncated)
                let byID = try await client.findUsers(UserQuery(descending: true, limit: 5))
                #expect(byID.users.map(\.userID) == ids.reversed())
                #expect(!byID.truncated)

                try await expectError(.invalidRequest) {
                    try await client.findUsers(UserQuery(filters: [.init(.userName, .exact, "")]))
                }
            }
        }
    }
}
