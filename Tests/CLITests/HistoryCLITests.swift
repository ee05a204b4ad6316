import Foundation
import Testing

@Suite("parley history", .timeLimit(.minutes(2)))
struct HistoryCLITests {
    @Test("a server user's history: filters, readable and JSON lines, paging with --after, clear errors")
    func serverHistory() async throws {
        try await withDataDirectory { directory in
            let server = try await TestServer.start(dataDirectory: directory, ["--history-days", "7"])
            defer { server.process.signal(SIGKILL) }
            func register(_ name: String) async throws -> String {
                let result = try await parley([
                    "register", "--server", server.address, "--name", name, "--password", "pw",
                ])
                try #require(result.status == 0, "\(result)")
                return try #require(result.lines.first)
            }
            let alice = try await register("alice")
            let bob = try await register("bob")
            let carol = try await register("carol")
            func asUser(_ user: String) -> [String] {
                ["--server", server.address, "--user", user, "--password", "pw"]
            }
            for (from, to, text) in [
                (alice, bob, "The invoice for March"), (alice, bob, "lunch at noon?"), (bob, alice, "Invoice received"),
                (alice, carol, "hello carol"),
            ] {
                let sent = try await parley(["send"] + asUser(from) + ["--to", to, text])
                try #require(sent.status == 0, "\(sent)")
            }

            let invoices = try await parley(["history"] + asUser(alice) + ["--with", bob, "--contains", "INVOICE"])
            #expect(invoices.status == 0, "\(invoices)")
            #expect(invoices.lines.count == 2, "\(invoices)")
            #expect(invoices.lines.first?.contains("\(bob) -> \(alice)") == true, "\(invoices)")
            #expect(invoices.lines.first?.hasSuffix("Invoice received") == true, "\(invoices)")
            #expect(invoices.lines.last?.contains("undelivered") == true, "\(invoices)")

            let json = try await parley(["history", "--json", "--oldest-first"] + asUser(alice) + ["--to", bob])
            let records = try json.jsonLines()
            #expect(records.map { $0["text"] as? String } == ["The invoice for March", "lunch at noon?"])
            #expect(records.allSatisfy { $0["sender"] as? Int == Int(alice) && $0["kind"] as? String == "text" })

            // Pages of one: the cursor goes to stderr (a last JSON line with --json).
            let first = try await parley(["history", "--limit", "1", "--json"] + asUser(alice) + ["--with", bob])
            let firstLines = try first.jsonLines()
            #expect(firstLines.count == 2, "\(first)")
            let cursor = try #require(firstLines.last?["nextCursor"] as? String)
            let second = try await parley(
                ["history", "--limit", "1", "--after", cursor] + asUser(alice) + ["--with", bob])
            #expect(second.lines.count == 1, "\(second)")
            #expect(second.lines.first?.hasSuffix("lunch at noon?") == true, "\(second)")
            #expect(second.errorOutput.contains("more: --after "), "\(second)")
            let every = try await parley(["history", "--limit", "1", "--all"] + asUser(alice))
            #expect(every.lines.count == 4, "\(every)")

            // carol sees only her own conversation.
            let carolSees = try await parley(["history"] + asUser(carol))
            #expect(carolSees.lines.count == 1, "\(carolSees)")
            #expect(carolSees.lines.first?.hasSuffix("hello carol") == true, "\(carolSees)")
            let nothing = try await parley(["history"] + asUser(carol) + ["--with", bob])
            #expect(nothing.status == 0 && nothing.lines.isEmpty, "\(nothing)")

            let bad = try await parley(["history"] + asUser(alice) + ["--contains", "a", "--exact", "b"])
            #expect(bad.status == 2, "\(bad)")
            let badTime = try await parley(["history"] + asUser(alice) + ["--since", "yesterday"])
            #expect(badTime.status == 2, "\(badTime)")
            let badCursor = try await parley(["history"] + asUser(alice) + ["--after", "nope"])
            #expect(badCursor.status == 4, "\(badCursor)")
            #expect(badCursor.errorOutput.contains("invalid-history-cursor"), "\(badCursor)")
            let stopped = try await server.stop()
            #expect(stopped == .exit(0), "server: \(server.process.errorOutput)")
        }
    }

    @Test("a server without --history-days says history is unavailable")
    func historyOff() async throws {
        try await withTestServer { server in
            let registered = try await parley([
                "register", "--server", server.address, "--name", "alice", "--password", "pw",
            ])
            let alice = try #require(registered.lines.first)
            let result = try await parley(["history", "--server", server.address, "--user", alice, "--password", "pw"])
            #expect(result.status == 4, "\(result)")
            #expect(result.errorOutput.contains("history-unavailable"), "\(result)")
        }
    }

    @Test("a node's history with --data: what it sent, with the route, also while no node runs")
    func nodeHistory() async throws {
        try await withDataDirectory { directory in
            let data = directory.appendingPathComponent("ann").path
            let send = try await parley(["send", "--data", data, "--to", "4242", "--wait", "0", "Réunion à midi"])
            #expect(send.status == 0, "\(send)")
            let result = try await parley(["history", "--data", data, "--contains", "reunion", "--json"])
            #expect(result.status == 0, "\(result)")
            let records = try result.jsonLines()
            #expect(records.count == 1, "\(result)")
            #expect(records.first?["route"] as? String == "queued")
            #expect(records.first?["recipient"] as? Int == 4242)
            #expect(records.first?["text"] as? String == "Réunion à midi")
            let none = try await parley(["history", "--data", directory.appendingPathComponent("nobody").path])
            #expect(none.status == 1, "\(none)")
        }
    }
}
