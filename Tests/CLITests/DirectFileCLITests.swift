import Foundation
import Testing

@Suite("parley send-file --data, receive --data --files and transfers resume", .timeLimit(.minutes(3)))
struct DirectFileCLITests {
    private func register(_ name: String, on address: String) async throws -> String {
        let result = try await parley(["register", "--server", address, "--name", name, "--password", "pw"])
        try #require(result.status == 0, "\(result)")
        return try #require(result.lines.first)
    }

    /// Runs `body` with a test server, users alice and bob (password "pw"), the options that log
    /// on as one of them, a work folder and an empty inbox folder in it.
    private func withTwoUsers(
        _ body: (_ alice: String, _ bob: String, _ asUser: (String) -> [String], _ work: URL, _ inbox: URL)
            async throws -> Void
    ) async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server.address)
            let bob = try await register("bob", on: server.address)
            let address = server.address
            try await withDataDirectory { work in
                let inbox = work.appendingPathComponent("inbox")
                try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
                try await body(alice, bob, { ["--server", address, "--user", $0, "--password", "pw"] }, work, inbox)
            }
        }
    }

    private func record(_ line: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    private func makeFile(_ size: Int, at url: URL) throws -> Data {
        var generator = SystemRandomNumberGenerator()
        var words = [UInt64](repeating: 0, count: (size + 7) / 8)
        for index in words.indices { words[index] = generator.next() }
        let data = words.withUnsafeBytes { Data($0.prefix(size)) }
        try data.write(to: url)
        return data
    }

    @Test("send-file --data goes directly to the receiving node, which saves the file; the server carries no byte")
    func directBetweenTwoNodes() async throws {
        try await withTwoUsers { alice, bob, asUser, work, inbox in
            let source = work.appendingPathComponent("notes.bin")
            let bytes = try makeFile(5_000_000, at: source)

            let receiver = try ChildProcess(
                [
                    "receive", "--json", "--data", work.appendingPathComponent("bob-node").path, "--files",
                    inbox.path,
                    "--count", "1",
                ] + asUser(bob))
            defer { receiver.signal(SIGKILL) }
            try await receiver.line { $0.contains("\"loggedOn\"") }

            let sent = try await parley(
                ["send-file", "--json", "--data", work.appendingPathComponent("alice-node").path] + asUser(alice)
                    + ["--to", bob, source.path])
            #expect(sent.status == 0, "\(sent)")
            let done = try #require(try sent.jsonLines().first { $0["event"] as? String == "completed" }, "\(sent)")
            #expect(done["route"] as? String == "direct", "\(sent)")
            #expect(done["peer"] as? Int == Int(bob))

            let saved = try record(try await receiver.line { $0.contains("\"event\":\"file\"") })
            #expect(try await receiver.waitForExit() == .exit(0), "\(receiver.errorOutput)")
            let path = try #require(saved["path"] as? String)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)
            // Nothing went through the server: it holds no transfer for either user.
            let held = try await parley(["transfers"] + asUser(bob))
            #expect(held.status == 0 && held.lines.isEmpty, "\(held)")
        }
    }

    @Test("send-file - sends standard input as a stream: directly with --data, through the server without")
    func standardInputAsAStream() async throws {
        try await withTwoUsers { alice, bob, asUser, work, inbox in
            let text = (0..<20_000).map { "line \($0) of a log that nobody knew the length of\n" }.joined()
            let receiver = try ChildProcess(
                [
                    "receive", "--json", "--data", work.appendingPathComponent("bob-node").path, "--files",
                    inbox.path, "--count", "2",
                ] + asUser(bob))
            defer { receiver.signal(SIGKILL) }
            try await receiver.line { $0.contains("\"loggedOn\"") }

            let missingName = try await parley(["send-file"] + asUser(alice) + ["--to", bob, "-"], input: text)
            #expect(missingName.status != 0 && missingName.errorOutput.contains("--name"), "\(missingName)")

            let direct = try await parley(
                ["send-file", "--json", "--data", work.appendingPathComponent("alice-node").path] + asUser(alice)
                    + ["--to", bob, "--name", "direct.log", "-"],
                input: text)
            #expect(direct.status == 0, "\(direct)")
            let done = try #require(try direct.jsonLines().first { $0["event"] as? String == "completed" }, "\(direct)")
            #expect(done["route"] as? String == "direct", "\(direct)")

            let viaServer = try await parley(
                ["send-file", "--json"] + asUser(alice) + ["--to", bob, "--name", "server.log", "-"], input: text)
            #expect(viaServer.status == 0, "\(viaServer)")

            #expect(try await receiver.waitForExit() == .exit(0), "\(receiver.errorOutput)")
            var saved: [String: [String: Any]] = [:]
            for line in receiver.output.split(separator: "\n") where line.contains("\"event\":\"file\"") {
                let record = try record(String(line))
                saved[try #require(record["name"] as? String)] = record
            }
            for name in ["direct.log", "server.log"] {
                let record = try #require(saved[name], "\(saved)")
                let path = try #require(record["path"] as? String)
                #expect(try String(contentsOfFile: path, encoding: .utf8) == text)
                #expect(record["size"] as? Int == text.utf8.count, "\(record)")
            }
        }
    }

    @Test(
        "transfers resume ID continues a download from its partial file; without the folder or the file, a clear error")
    func resumeThroughTheServer() async throws {
        try await withTwoUsers { alice, bob, asUser, work, inbox in
            let source = work.appendingPathComponent("plan.bin")
            let bytes = try makeFile(3_000_000, at: source)
            let uploaded = try await parley(
                ["send-file", "--json"] + asUser(alice) + ["--to", bob, "--no-wait", source.path])
            #expect(uploaded.status == 0, "\(uploaded)")
            let id = try #require(
                try uploaded.jsonLines().first { $0["event"] as? String == "uploaded" }?["id"] as? UInt64)

            let noFolder = try await parley(["transfers", "resume", String(id)] + asUser(bob))
            #expect(noFolder.status != 0, "\(noFolder)")
            #expect(noFolder.errorOutput.contains("give --files DIR"), "\(noFolder)")
            let unknown = try await parley(["transfers", "resume", "12345"] + asUser(alice))
            #expect(unknown.status != 0, "\(unknown)")
            #expect(unknown.errorOutput.contains("send-file --data again"), "\(unknown)")
            let noFile = try await parley(["transfers", "resume", String(id)] + asUser(alice))
            #expect(noFile.errorOutput.contains("give --file PATH"), "\(noFile)")

            // A download cut after its first 1,000,000 bytes: the partial file holds them.
            let partial = inbox.appendingPathComponent(".plan.bin.\(alice)-\(id).parley-part")
            try bytes.prefix(1_000_000).write(to: partial)
            let resumed = try await parley(
                ["transfers", "resume", String(id), "--json", "--files", inbox.path] + asUser(bob))
            #expect(resumed.status == 0, "\(resumed)")
            let progress = try #require(
                try resumed.jsonLines().first { $0["event"] as? String == "progress" }, "\(resumed)")
            #expect(progress["resumedFrom"] as? Int == 1_000_000, "\(resumed)")
            #expect(try Data(contentsOf: inbox.appendingPathComponent("plan.bin")) == bytes)
            #expect(try FileManager.default.contentsOfDirectory(atPath: inbox.path) == ["plan.bin"])
        }
    }
}
