import Foundation
import Testing

@Suite("parley command", .timeLimit(.minutes(2)))
struct CommandCLITests {
    private func register(_ name: String, on server: TestServer) async throws -> String {
        let result = try await parley(["register", "--server", server.address, "--name", name, "--password", "pw"])
        try #require(result.status == 0, "\(result)")
        return try #require(result.lines.first)
    }

    @Test("a command goes from one CLI process to another's handler and back; errors exit 4 with their code")
    func commandBetweenProcesses() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", on: server)
            func asUser(_ user: String) -> [String] {
                ["--server", server.address, "--user", user, "--password", "pw"]
            }

            // bob answers "echo" with its payload, and prints every command he gets.
            let receiver = try ChildProcess(["receive", "--json", "--echo-command", "echo"] + asUser(bob))
            defer { receiver.signal(SIGKILL) }
            try await receiver.line { $0.contains("\"loggedOn\"") }

            let echoed = try await parley(["command"] + asUser(alice) + ["--to", bob, "echo", "hello there"])
            #expect(echoed.status == 0, "\(echoed)")
            #expect(echoed.lines == ["hello there"])
            let shown = try await receiver.line { $0.contains("\"command\"") }
            #expect(shown.contains("\"name\":\"echo\""), "\(shown)")
            #expect(shown.contains("\"sender\":\(alice)"), "\(shown)")
            #expect(shown.contains("\"text\":\"hello there\""), "\(shown)")

            let json = try await parley(["command", "--json"] + asUser(alice) + ["--to", bob, "echo", "x"])
            let record = try #require(try json.jsonLines().first)
            #expect(record["event"] as? String == "commandReply")
            #expect(record["text"] as? String == "x")
            #expect(record["to"] as? Int == Int(bob))

            let fired = try await parley(
                ["command", "--fire-and-forget"] + asUser(alice) + ["--to", bob, "note", "n"])
            #expect(fired.lines == ["delivered"], "\(fired)")
            try await receiver.line { $0.contains("\"name\":\"note\"") && $0.contains("\"expectsReply\":false") }

            let unhandled = try await parley(["command"] + asUser(alice) + ["--to", bob, "other"])
            #expect(unhandled.status == 4, "\(unhandled)")
            #expect(unhandled.errorOutput.contains("no-handler"), "\(unhandled)")
            let toServer = try await parley(["command"] + asUser(alice) + ["--to", "server", "time"])
            #expect(toServer.status == 4, "\(toServer)")
            #expect(toServer.errorOutput.contains("no-handler"), "\(toServer)")

            receiver.signal(SIGKILL)
            try await receiver.waitForExit()
            let offline = try await parley(["command"] + asUser(alice) + ["--to", bob, "echo", "x"])
            #expect(offline.status == 4, "\(offline)")
            #expect(offline.errorOutput.contains("recipient-offline"), "\(offline)")

            let badTimeout = try await parley(["command"] + asUser(alice) + ["--to", bob, "echo", "--timeout", "0"])
            #expect(badTimeout.status == 2, "\(badTimeout)")
            let badName = try await parley(["command"] + asUser(alice) + ["--to", bob, ""])
            #expect(badName.status == 2, "\(badName)")
        }
    }
}
