import Foundation
import Testing

/// A file of `size` pseudo-random bytes (fast to make, not compressible) in `directory`.
private func makeFile(_ size: Int, in directory: URL, named name: String = "payload.bin") throws -> URL {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    var bytes = [UInt8](repeating: 0, count: size)
    for index in 0..<size {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        bytes[index] = UInt8(truncatingIfNeeded: state)
    }
    let url = directory.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url
}

/// The JSON object of one output line.
private func record(_ line: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
}

@Suite("parley send-file and receive --files", .timeLimit(.minutes(3)))
struct FileTransferCLITests {
    private func register(_ name: String, on address: String) async throws -> String {
        let result = try await parley(["register", "--server", address, "--name", name, "--password", "pw"])
        try #require(result.status == 0, "\(result)")
        return try #require(result.lines.first)
    }

    @Test(
        "send-file exits 0 once receive --files saved the file with the right hash; kill -9 of the receiver resumes from its partial file"
    )
    func receiverKilledAndResumed() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server.address)
            let bob = try await register("bob", on: server.address)
            func asUser(_ user: String) -> [String] {
                ["--server", server.address, "--user", user, "--password", "pw"]
            }
            try await withDataDirectory { work in
                let source = try makeFile(96 << 20, in: work)
                let inbox = work.appendingPathComponent("inbox")
                try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)

                let sender = try ChildProcess(["send-file", "--json"] + asUser(alice) + ["--to", bob, source.path])
                defer { sender.signal(SIGKILL) }
                try await sender.line { $0.contains("\"uploaded\"") }

                // The receiver is killed as soon as it has written its first chunk.
                let first = try ChildProcess(
                    ["receive", "--json", "--files", inbox.path, "--count", "1"] + asUser(bob))
                defer { first.signal(SIGKILL) }
                try await first.line { $0.contains("\"progress\"") }
                first.signal(SIGKILL)
                try await first.waitForExit()
                let partial = try FileManager.default.contentsOfDirectory(atPath: inbox.path)
                try #require(partial.count == 1 && partial[0].hasSuffix(".parley-part"), "\(partial)")
                // transfers list --files names what the partial file holds.
                let listed = try await parley(["transfers", "--json", "--files", inbox.path] + asUser(bob))
                #expect(listed.status == 0, "\(listed)")
                let held = try #require(
                    try listed.jsonLines().first { $0["event"] as? String == "transfer" }, "\(listed)")
                let kept = try #require(
                    try listed.jsonLines().first { $0["event"] as? String == "partial" }, "\(listed)")
                #expect(kept["id"] as? Int == held["id"] as? Int && kept["sender"] as? Int == Int(alice))
                #expect(
                    kept["name"] as? String == "payload.bin" && kept["path"] as? String == inbox.path + "/" + partial[0]
                )
                let attributes = try FileManager.default.attributesOfItem(atPath: inbox.path + "/" + partial[0])
                #expect(
                    kept["bytes"] as? Int == (attributes[.size] as? NSNumber)?.intValue
                        && (kept["bytes"] as? Int ?? 0) > 0)

                let second = try ChildProcess(
                    ["receive", "--json", "--files", inbox.path, "--count", "1"] + asUser(bob))
                defer { second.signal(SIGKILL) }
                let resumed = try record(try await second.line { $0.contains("\"progress\"") })
                let resumedFrom = try #require(resumed["resumedFrom"] as? Int)
                #expect(resumedFrom > 0, "the second receiver fetched from zero")
                #expect(resumedFrom < 96 << 20)
                let saved = try record(try await second.line { $0.contains("\"event\":\"file\"") })
                #expect(try await second.waitForExit() == .exit(0), "\(second.errorOutput)")
                let path = try #require(saved["path"] as? String)
                #expect(path == inbox.path + "/payload.bin")
                #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(contentsOf: source))
                #expect(try FileManager.default.contentsOfDirectory(atPath: inbox.path) == ["payload.bin"])

                let done = try record(try await sender.line { $0.contains("\"completed\"") })
                #expect(done["peer"] as? Int == Int(bob))
                #expect(try await sender.waitForExit() == .exit(0), "\(sender.errorOutput)")
            }
        }
    }

    @Test(
        "kill -9 of the server in the middle of an upload: send-file resumes from the server's offset after its restart"
    )
    func serverKilledDuringUpload() async throws {
        try await withDataDirectory { data in
            let server = try await TestServer.start(dataDirectory: data)
            var restarted: TestServer?
            defer {
                server.process.signal(SIGKILL)
                restarted?.process.signal(SIGKILL)
            }
            let alice = try await register("alice", on: server.address)
            let bob = try await register("bob", on: server.address)
            func asUser(_ user: String) -> [String] {
                ["--server", server.address, "--user", user, "--password", "pw"]
            }
            try await withDataDirectory { work in
                let source = try makeFile(96 << 20, in: work)
                let sender = try ChildProcess(
                    ["send-file", "--json", "--retry", "lan"] + asUser(alice) + ["--to", bob, "--no-wait", source.path])
                defer { sender.signal(SIGKILL) }
                try await sender.line { $0.contains("\"progress\"") }
                // On a loaded machine the whole upload may end before the kill: then nothing was
                // cut, and only the end result below says something.
                let uploadedBeforeKill = sender.output.contains("\"uploaded\"")
                server.process.signal(SIGKILL)
                try await server.process.waitForExit()
                restarted = try await TestServer.start(dataDirectory: data, port: server.port)

                let uploaded = try await sender.line(timeout: .seconds(90)) { $0.contains("\"uploaded\"") }
                #expect(try await sender.waitForExit() == .exit(0), "\(sender.errorOutput)")
                #expect(uploaded.contains("payload.bin"))
                let progress = sender.output.split(separator: "\n").map(String.init).filter {
                    $0.contains("\"progress\"")
                }
                let resumes = try progress.map(record).compactMap { $0["resumedFrom"] as? Int }.filter { $0 > 0 }
                #expect(
                    uploadedBeforeKill || !resumes.isEmpty,
                    "no progress line after the restart resumed past 0: \(progress)"
                )

                let inbox = work.appendingPathComponent("inbox")
                try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
                let received = try await parley(
                    ["receive", "--files", inbox.path, "--count", "1", "--timeout", "60"] + asUser(bob),
                    timeout: .seconds(90))
                #expect(received.status == 0, "\(received)")
                #expect(
                    try Data(contentsOf: inbox.appendingPathComponent("payload.bin")) == Data(contentsOf: source))
            }
        }
    }
}
