import Foundation
import Testing

@Suite("parley contacts, status and watch", .timeLimit(.minutes(2)))
struct ContactsCLITests {
    private func register(_ name: String, on server: TestServer) async throws -> String {
        let result = try await parley(["register", "--server", server.address, "--name", name, "--password", "pw"])
        try #require(result.status == 0, "\(result)")
        return try #require(result.lines.first)
    }

    @Test("contacts are added, listed and removed; presence is watched; a killed client shows offline at once")
    func contactsAndPresence() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", on: server)
            func asUser(_ user: String) -> [String] {
                ["--server", server.address, "--user", user, "--password", "pw"]
            }

            let added = try await parley(["contacts", "add"] + asUser(alice) + [bob, "--name", "Bobby"])
            #expect(added.status == 0, "\(added)")
            #expect(added.lines == ["\(bob) Bobby (bob) custom(Bobby)"])
            let listed = try await parley(["contacts", "list", "--json"] + asUser(alice))
            let contacts = try listed.jsonLines()
            #expect(contacts.count == 1)
            #expect(contacts.first?["userID"] as? Int == Int(bob))
            #expect(contacts.first?["name"] as? String == "Bobby")
            let unknown = try await parley(["contacts", "add"] + asUser(alice) + ["424242"])
            #expect(unknown.status != 0)
            #expect(unknown.errorOutput.contains("424242"), "\(unknown)")

            let removed = try await parley(["contacts", "remove"] + asUser(alice) + [bob])
            #expect(removed.lines == ["removed \(bob)"], "\(removed)")
            let again = try await parley(["contacts", "remove"] + asUser(alice) + [bob])
            #expect(again.status != 0)
            #expect(again.errorOutput.contains("not in the contact list"), "\(again)")
            let readded = try await parley(["contacts", "add"] + asUser(alice) + [bob])
            #expect(readded.lines == ["\(bob) bob (bob) user-name"], "\(readded)")

            let status = try await parley(["status", "away", "--text", "at lunch"] + asUser(bob))
            #expect(status.status == 0, "\(status)")
            #expect(status.lines == ["status away (at lunch)"])

            let watch = try ChildProcess(["watch", "--json"] + asUser(alice))
            defer { watch.signal(SIGKILL) }
            try await watch.line { $0.contains("\"snapshot\":true") && $0.contains("\"offline\"") }

            // bob logs on (and stays): alice sees the state bob chose.
            let receiver = try ChildProcess(["receive"] + asUser(bob))
            defer { receiver.signal(SIGKILL) }
            try await watch.line { $0.contains("\"away\"") && $0.contains("at lunch") }

            // kill -9 of bob's process: its kernel closes the connection, the server sees it at once.
            let killed = ContinuousClock.now
            receiver.signal(SIGKILL)
            try await watch.line(timeout: .seconds(10)) {
                $0.contains("\"offline\"") && $0.contains("\"snapshot\":false")
            }
            let seen = ContinuousClock.now - killed
            #expect(seen < .seconds(5), "offline seen after \(seen)")
        }
    }

    @Test("parley chat lists contacts with their presence (/who) and prints presence changes as they happen")
    func chatShowsPresence() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", on: server)
            func asUser(_ user: String) -> [String] {
                ["--server", server.address, "--user", user, "--password", "pw"]
            }
            let added = try await parley(["contacts", "add"] + asUser(alice) + [bob, "--name", "Bobby"])
            try #require(added.status == 0, "\(added)")
            let status = try await parley(["status", "busy", "--text", "in a meeting"] + asUser(bob))
            try #require(status.status == 0, "\(status)")

            let chat = try ChildProcess(["chat"] + asUser(alice), input: "/who\n", keepsInputOpen: true)
            defer { chat.signal(SIGKILL) }
            try await chat.line { $0 == "\(bob) Bobby offline" }

            // bob logs on with the state he chose: alice's chat prints the change, and /who shows it.
            let receiver = try ChildProcess(["receive"] + asUser(bob))
            defer { receiver.signal(SIGKILL) }
            try await chat.line { $0 == "* \(bob) Bobby is busy (in a meeting)" }
            try chat.write("/who\n")
            try await chat.line { $0 == "\(bob) Bobby busy (in a meeting)" }
            receiver.signal(SIGKILL)
            try await chat.line { $0 == "* \(bob) Bobby is offline" }
            try chat.write("/quit\n", thenClose: true)
            let end = try await chat.waitForExit()
            #expect(end == .exit(0), "\(chat.errorOutput)")
        }
    }

    @Test("parley bench measures presence at logon and presence fan-out")
    func presenceBench() async throws {
        try await withTestServer { server in
            let logon = try await parley(
                ["bench", "--server", server.address, "--presence-logon", "5", "--rounds", "2", "--json"],
                timeout: .seconds(90)
            )
            #expect(logon.status == 0, "\(logon)")
            let logonReport = try #require(try logon.jsonLines().first)
            #expect(logonReport["contacts"] as? Int == 5)
            #expect((logonReport["milliseconds"] as? [Double])?.count == 2, "\(logonReport)")
            #expect((logonReport["p50Ms"] as? Double ?? 0) > 0, "\(logonReport)")

            let fanout = try await parley(
                [
                    "bench", "--server", server.address, "--presence-fanout", "6", "--rounds", "3", "--json",
                    "--server-pid", "\(server.process.processIdentifier)",
                ],
                timeout: .seconds(90)
            )
            #expect(fanout.status == 0, "\(fanout)")
            let fanoutReport = try #require(try fanout.jsonLines().first)
            #expect(fanoutReport["watchers"] as? Int == 6)
            #expect((fanoutReport["milliseconds"] as? [Double])?.count == 3, "\(fanoutReport)")
            // The server's CPU time comes in clock ticks: a run this small may round to 0.
            #expect((fanoutReport["serverMicrosecondsPerEvent"] as? Double ?? -1) >= 0, "\(fanoutReport)")
        }
    }
}
