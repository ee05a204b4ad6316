import Foundation
import Testing

@Suite("parley node, peers and outbox", .serialized, .timeLimit(.minutes(3)))
struct NodeCLITests {
    /// A started `parley node` on `data`, reading commands from standard input; its port.
    private func startNode(_ data: String, name: String, _ extra: [String] = []) async throws -> (ChildProcess, Int) {
        let node = try ChildProcess(
            ["node", "--data", data, "--name", name, "--listen-host", "127.0.0.1", "--json"] + extra,
            input: "",
            keepsInputOpen: true
        )
        let started = try await node.line { $0.contains("\"event\":\"started\"") }
        let object = try JSONSerialization.jsonObject(with: Data(started.utf8)) as? [String: Any]
        let port = try #require(object?["port"] as? Int, "\(started)")
        return (node, port)
    }

    private func quit(_ node: ChildProcess) async throws {
        try node.write("quit\n", thenClose: true)
        let ended = try await node.waitForExit()
        #expect(ended == .exit(0), "\(node.errorOutput)")
    }

    @Test("a second node on a data directory in use exits 1 and says so; a busy --listen-port says address in use")
    func dataDirectoryInUse() async throws {
        try await withDataDirectory { directory in
            let data = directory.appendingPathComponent("ann").path
            let (first, port) = try await startNode(data, name: "ann")

            let second = try await parley(["node", "--data", data, "--name", "ann", "--no-stdin-commands"])
            #expect(second.status == 1, "\(second)")
            #expect(second.errorOutput.contains("is in use by another node (process \(first.processIdentifier))"))
            #expect(!second.errorOutput.contains("NSCocoaErrorDomain"), "\(second)")

            let send = try await parley(["send", "--data", data, "--to", "4242", "--wait", "0", "hello"])
            #expect(send.status == 1, "\(send)")
            #expect(send.errorOutput.contains("is in use by another node"), "\(send)")

            let busy = try await parley([
                "node", "--data", directory.appendingPathComponent("bob").path, "--name", "bob",
                "--listen-host", "127.0.0.1", "--listen-port", String(port), "--no-stdin-commands",
            ])
            #expect(busy.status == 1, "\(busy)")
            #expect(busy.errorOutput.contains("address in use"), "\(busy)")
            #expect(!busy.errorOutput.contains("stopped before it listened"), "\(busy)")

            try await quit(first)
            // Free again once the first has stopped.
            let (third, _) = try await startNode(data, name: "ann")
            try await quit(third)
        }
    }

    @Test("SIGTERM stops the node's service group: its last line is stopped, exit 0, and the data directory is free")
    func gracefulShutdown() async throws {
        try await withDataDirectory { directory in
            let data = directory.appendingPathComponent("ann").path
            let (node, _) = try await startNode(data, name: "ann")
            node.signal(SIGTERM)
            #expect(try await node.waitForExit() == .exit(0), "\(node.errorOutput)")
            #expect(node.outputLines.last?.contains("\"event\":\"stopped\"") == true, "\(node.output)")
            let (again, _) = try await startNode(data, name: "ann")
            try await quit(again)
        }
    }

    @Test("status without text shows the current status")
    func status() async throws {
        try await withDataDirectory { directory in
            let data = directory.appendingPathComponent("ann").path
            let node = try ChildProcess(
                ["node", "--data", data, "--name", "ann", "--listen-host", "127.0.0.1"],
                input: "status\nstatus away\nstatus\nquit\n"
            )
            let ended = try await node.waitForExit()
            #expect(ended == .exit(0), "\(node.errorOutput)")
            let statuses = node.outputLines.filter { $0.hasPrefix("status") || $0.hasPrefix("error") }
            #expect(statuses == ["status: online", "status: away", "status: away"], "\(node.output)")
        }
    }

    @Test("peers exits 1 with the reason when D-Bus or avahi-daemon cannot be reached")
    func peersWithoutAvahi() async throws {
        let result = try await parley(
            ["peers", "--timeout", "0.5"],
            environment: ["DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/parley-test-bus"]
        )
        #expect(result.status == 1, "\(result)")
        #expect(!result.output.contains("no Parley nodes found"), "\(result)")
        #expect(result.errorOutput.contains("error: cannot browse the LAN"), "\(result)")
    }

    @Test("unpin names what it unpinned, exits 1 when nothing was pinned, 2 for a bad subject")
    func unpin() async throws {
        try await withDataDirectory { directory in
            let data = directory.appendingPathComponent("ann").path
            let queued = try await parley(["send", "--data", data, "--to", "4242", "--wait", "0", "hello"])
            #expect(queued.status == 0, "\(queued)")
            let nothing = try await parley(["unpin", "--data", data, "user", "42"])
            #expect(nothing.status == 1, "\(nothing)")
            #expect(nothing.errorOutput.contains("no key is pinned for user 42"), "\(nothing)")
            let bare = try await parley(["unpin", "--data", data, "42"])
            #expect(bare.errorOutput.contains("no key is pinned for user 42"), "\(bare)")
            let bad = try await parley(["unpin", "--data", data, "someone"])
            #expect(bad.status == 2, "\(bad)")
        }
    }

    @Test("outbox list shows queued messages and outbox cancel takes one out")
    func outbox() async throws {
        try await withDataDirectory { directory in
            let data = directory.appendingPathComponent("ann").path
            let queued = try await parley(["send", "--data", data, "--to", "4242", "--wait", "0", "--json", "hello"])
            #expect(queued.status == 0, "\(queued)")
            let record = try #require(try queued.jsonLines().first, "\(queued)")
            #expect(record["route"] as? String == "queued", "\(queued)")
            let id = try #require(record["messageID"] as? UInt64, "\(queued)")

            let list = try await parley(["outbox", "list", "--data", data])
            #expect(list.status == 0, "\(list)")
            #expect(list.lines.count == 1, "\(list)")
            #expect(list.lines.first?.hasPrefix("\(id) to user 4242, queued ") == true, "\(list)")
            #expect(list.lines.first?.hasSuffix(": hello") == true, "\(list)")

            let json = try await parley(["outbox", "list", "--data", data, "--json"])
            let entry = try #require(try json.jsonLines().first, "\(json)")
            #expect(entry["messageID"] as? UInt64 == id && entry["toUser"] as? Int == 4242, "\(json)")
            #expect(entry["expiresAt"] is String, "\(json)")

            let cancel = try await parley(["outbox", "cancel", "--data", data, String(id)])
            #expect(cancel.status == 0 && cancel.lines == ["cancelled \(id)"], "\(cancel)")
            let again = try await parley(["outbox", "cancel", "--data", data, String(id)])
            #expect(again.status == 1, "\(again)")
            #expect(again.errorOutput.contains("is not in the outbox"), "\(again)")
            let empty = try await parley(["outbox", "list", "--data", data])
            #expect(empty.lines == ["the outbox is empty"], "\(empty)")

            let missing = try await parley(["outbox", "list", "--data", directory.appendingPathComponent("none").path])
            #expect(missing.status == 1, "\(missing)")
            #expect(missing.errorOutput.contains("holds no node data"), "\(missing)")
        }
    }
}
