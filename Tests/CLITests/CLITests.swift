import Foundation
import Testing

/// End-to-end tests of the built `parley` executable: a real server process, client commands
/// as processes, assertions on their output and exit codes.
@Suite("parley CLI", .serialized, .timeLimit(.minutes(3)))
struct CLITests {
    /// Registers a user and returns its ID as printed.
    private func register(
        _ name: String,
        password: String = "secret",
        on server: TestServer,
        _ extra: [String] = []
    ) async throws -> String {
        let result = try await parley(
            ["register", "--server", server.address, "--name", name, "--password", password] + extra
        )
        try #require(result.status == 0, "\(result)")
        let id = try #require(result.lines.first)
        #expect(result.lines.count == 1)
        return id
    }

    @Test("register assigns IDs from 1000, honours a requested ID and refuses a taken one")
    func register() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            #expect(try #require(Int(alice)) >= 1000)

            let bob = try await register("bob", on: server, ["--user-id", "5000"])
            #expect(bob == "5000")

            let taken = try await parley([
                "register", "--server", server.address, "--name", "carol", "--password", "x", "--user-id", "5000",
            ])
            #expect(taken.status == 4, "\(taken)")
            #expect(taken.output.isEmpty)
            #expect(taken.errorOutput.hasPrefix("error: user-already-exists"), "\(taken)")
            #expect(taken.errorOutput.split(separator: "\n").count == 1)
        }
    }

    @Test("a message for an offline user is stored, received once, and acknowledged")
    func offlineDelivery() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", password: "bobpw", on: server)

            let sent = try await parley([
                "send", "--server", server.address, "--user", alice, "--password", "secret", "--to", bob,
                "hello offline",
            ])
            #expect(sent.status == 0, "\(sent)")
            #expect(sent.lines == ["\(bob) accepted-offline"])

            let received = try await parley([
                "receive", "--server", server.address, "--user", bob, "--password", "bobpw", "--count", "1",
                "--timeout", "20",
            ])
            #expect(received.status == 0, "\(received)")
            #expect(received.lines.count == 1)
            let line = try #require(received.lines.first)
            #expect(line.hasPrefix("\(alice) -> \(bob) ["), "\(line)")
            #expect(line.hasSuffix("] hello offline"), "\(line)")

            // Printing it acknowledged it: nothing comes again.
            let again = try await parley([
                "receive", "--server", server.address, "--user", bob, "--password", "bobpw", "--timeout", "1",
            ])
            #expect(again.status == 0, "\(again)")
            #expect(again.output.isEmpty, "\(again)")

            let short = try await parley([
                "receive", "--server", server.address, "--user", bob, "--password", "bobpw", "--count", "1",
                "--timeout", "1",
            ])
            #expect(short.status == 6, "\(short)")
        }
    }

    @Test("sending to an unknown user reports every result and exits 5")
    func unknownRecipient() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", on: server)
            let result = try await parley([
                "send", "--server", server.address, "--user", alice, "--password", "secret", "--to", bob, "--to",
                "999999", "hi",
            ])
            #expect(result.status == 5, "\(result)")
            #expect(result.lines.count == 2)
            #expect(result.lines.first == "\(bob) accepted-offline")
            #expect(result.lines.last?.hasPrefix("999999 failed recipient-not-found") == true, "\(result)")
        }
    }

    @Test("send --data queues without a route, then sends queued and new messages through the server, in order")
    func sendAsNode() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", password: "bobpw", on: server)
            let data = server.dataDirectory.appendingPathComponent("alice-node").path

            // No server, nobody on the LAN: the message waits in the node's outbox.
            let queued = try await parley(["send", "--data", data, "--to", bob, "--wait", "0", "first"])
            #expect(queued.status == 0, "\(queued)")
            let queuedLine = try #require(queued.lines.first)
            #expect(queuedLine.hasPrefix("sent "), "\(queued)")
            #expect(queuedLine.hasSuffix(" to user \(bob) via queued"), "\(queued)")

            // With the server: the queued message leaves first, then the new one, both stored for bob.
            let sent = try await parley([
                "send", "--data", data, "--server", server.address, "--user", alice, "--password", "secret",
                "--to", bob, "--json", "second",
            ])
            #expect(sent.status == 0, "\(sent)")
            let record = try #require(try sent.jsonLines().first { $0["event"] as? String == "sent" }, "\(sent)")
            #expect(record["route"] as? String == "server", "\(sent)")
            #expect(record["toUser"] as? Int == Int(bob), "\(sent)")

            let received = try await parley([
                "receive", "--server", server.address, "--user", bob, "--password", "bobpw", "--count", "2",
                "--timeout", "20",
            ])
            #expect(received.status == 0, "\(received)")
            #expect(received.lines.map { $0.split(separator: " ").last.map(String.init) } == ["first", "second"])

            // A wrong password is a clear refusal, not a silently queued message.
            let refused = try await parley([
                "send", "--data", data, "--server", server.address, "--user", alice, "--password", "wrong",
                "--to", bob, "third",
            ])
            #expect(refused.status == 4, "\(refused)")
            #expect(refused.output.isEmpty, "\(refused)")

            // An unknown recipient is refused by the server: an error line and exit 5.
            let unknown = try await parley([
                "send", "--data", data, "--server", server.address, "--user", alice, "--password", "secret",
                "--to", "999999", "hello?",
            ])
            #expect(unknown.status == 5, "\(unknown)")
            #expect(unknown.lines.first?.hasPrefix("error: send: 999999:") == true, "\(unknown)")

            let usage = try await parley(["send", "--to", bob, "no route"])
            #expect(usage.status == 2, "\(usage)")
            #expect(usage.errorOutput.contains("--server HOST:PORT, or --data DIR"), "\(usage)")
        }
    }

    @Test("exists, whois and find print users")
    func directory() async throws {
        try await withTestServer { server in
            let alice = try await register(
                "alice",
                on: server,
                ["--first-name", "Alice", "--last-name", "Smith", "--organization", "Acme", "--department", "Lab"]
            )
            let bob = try await register("bob", password: "bobpw", on: server, ["--organization", "Other"])
            let address = server.address

            let exists = try await parley(["exists", "--server", address, alice])
            #expect(exists.status == 0 && exists.lines == ["true"], "\(exists)")
            let missing = try await parley(["exists", "--server", address, "4000000"])
            #expect(missing.status == 0 && missing.lines == ["false"], "\(missing)")

            let guestWhois = try await parley(["whois", "--server", address, alice])
            #expect(guestWhois.status == 2, "\(guestWhois)")
            #expect(guestWhois.errorOutput.contains("whois needs --user and --password"), "\(guestWhois)")

            let whois = try await parley(["whois", "--server", address, "--user", bob, "--password", "bobpw", alice])
            #expect(whois.status == 0, "\(whois)")
            #expect(whois.lines == ["\(alice) alice (Alice Smith, Acme/Lab) offline"])

            let me = try await parley(["whois", "--server", address, "--user", bob, "--password", "bobpw", bob])
            #expect(me.lines == ["\(bob) bob (Other) online"], "\(me)")

            let all = try await parley(["find", "--server", address])
            #expect(all.status == 0, "\(all)")
            #expect(all.lines == ["\(alice) alice (Alice Smith, Acme/Lab) offline", "\(bob) bob (Other) offline"])

            let filtered = try await parley([
                "find", "--server", address, "--field", "organization", "--match", "prefix", "--value", "ac",
            ])
            #expect(filtered.lines == ["\(alice) alice (Alice Smith, Acme/Lab) offline"], "\(filtered)")

            let prefix = try await parley(["find", "--server", address, "--name-prefix", "BO"])
            #expect(prefix.lines == ["\(bob) bob (Other) offline"], "\(prefix)")

            let sorted = try await parley([
                "find", "--server", address, "--sort", "user-name", "--descending", "--limit", "1",
            ])
            #expect(sorted.lines == ["\(bob) bob (Other) offline"], "\(sorted)")

            let byName = try await parley(["find", "--server", address, "--name", "alice"])
            #expect(byName.lines == [alice], "\(byName)")

            let offline = try await parley(["find", "--server", address, "--offline"])
            #expect(offline.lines.count == 2, "\(offline)")
        }
    }

    @Test("--json prints one JSON object per line")
    func json() async throws {
        try await withTestServer { server in
            let address = server.address
            let registered = try await parley([
                "register", "--server", address, "--name", "alice", "--password", "secret", "--json",
            ])
            let user = try #require(try registered.jsonLines().first)
            let alice = try #require(user["userID"] as? Int)
            #expect(user["userName"] as? String == "alice")
            let bob = try await register("bob", on: server)

            let sent = try await parley([
                "send", "--server", address, "--user", "\(alice)", "--password", "secret", "--to", bob, "--to", "7",
                "--json", "hi json",
            ])
            #expect(sent.status == 5, "\(sent)")
            let results = try sent.jsonLines()
            #expect(results.count == 2)
            #expect(results.first?["status"] as? String == "accepted-offline")
            #expect(results.first?["recipient"] as? Int == Int(bob))
            #expect(results.last?["status"] as? String == "failed")
            #expect(results.last?["error"] as? String == "recipient-not-found")

            let received = try await parley([
                "receive", "--server", address, "--user", bob, "--password", "secret", "--count", "1", "--json",
            ])
            #expect(received.status == 0, "\(received)")
            let events = try received.jsonLines()
            #expect(events.map { $0["event"] as? String } == ["loggedOn", "message"])
            let message = try #require(events.last)
            #expect(message["sender"] as? Int == alice)
            #expect(message["recipients"] as? [Int] == [Int(bob)!, 7])
            #expect(message["kind"] as? String == "text")
            #expect(message["text"] as? String == "hi json")
            #expect((message["sentAt"] as? String)?.hasSuffix("Z") == true)
            #expect(message["deliveredAt"] is String)

            let exists = try await parley(["exists", "--server", address, bob, "--json"])
            #expect(try exists.jsonLines().first?["exists"] as? Bool == true)

            let found = try await parley(["find", "--server", address, "--json"])
            #expect(try found.jsonLines().compactMap { $0["userName"] as? String } == ["alice", "bob"])
        }
    }

    @Test("wrong credentials exit 4 and an unreachable server exits 3, each with one clear line")
    func refusals() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let wrong = try await parley([
                "send", "--server", server.address, "--user", alice, "--password", "wrong", "--to", alice, "hi",
            ])
            #expect(wrong.status == 4, "\(wrong)")
            #expect(wrong.output.isEmpty)
            #expect(wrong.errorOutput == "error: invalid-credentials (10): unknown user ID or wrong password\n")

            let unknown = try await parley([
                "receive", "--server", server.address, "--user", "424242", "--password", "x", "--timeout", "1",
            ])
            #expect(unknown.status == 4, "\(unknown)")
            #expect(unknown.errorOutput.hasPrefix("error: invalid-credentials"), "\(unknown)")
        }
        // Nothing listens on port 1.
        let unreachable = try await parley(["exists", "--server", "127.0.0.1:1", "1000"])
        #expect(unreachable.status == 3, "\(unreachable)")
        #expect(unreachable.errorOutput.hasPrefix("error: not-connected"), "\(unreachable)")

        let usage = try await parley([
            "send", "--server", "nonsense", "--user", "1", "--password", "x", "--to", "2", "hi",
        ])
        #expect(usage.status == 2, "\(usage)")
    }

    @Test("chat driven over a pipe delivers a message to a receiver")
    func chat() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", on: server)
            let receiver = try ChildProcess([
                "receive", "--server", server.address, "--user", bob, "--password", "secret", "--count", "1",
                "--timeout", "30", "--json",
            ])
            try await receiver.line { $0.contains("\"loggedOn\"") }

            let chat = try await parley(
                ["chat", "--server", server.address, "--user", alice, "--password", "secret"],
                input: "/who\n/to \(bob)\nhello from chat\n"
            )
            #expect(chat.status == 0, "\(chat)")
            // /who lists both users: they are logged on (the receiver until it has its message).
            #expect(chat.lines.contains("\(alice) alice online"), "\(chat)")
            #expect(chat.lines.contains("\(bob) bob online"), "\(chat)")

            let ended = try await receiver.waitForExit()
            #expect(ended == .exit(0), "\(receiver.errorOutput)")
            let message = try #require(
                CommandResult(termination: ended, output: receiver.output, errorOutput: "").jsonLines().last
            )
            #expect(message["text"] as? String == "hello from chat")
            #expect(message["sender"] as? Int == Int(alice))
        }
    }

    @Test("chat prints incoming messages, stored ones included, and leaves at /quit")
    func chatReceives() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", on: server)
            let stored = try await parley([
                "send", "--server", server.address, "--user", alice, "--password", "secret", "--to", bob, "while away",
            ])
            #expect(stored.status == 0, "\(stored)")

            let chat = try ChildProcess(
                ["chat", "--server", server.address, "--user", bob, "--password", "secret"],
                input: "/to \(alice)\n",
                keepsInputOpen: true
            )
            try await chat.line { $0 == "[from \(alice)] while away" }
            let live = try await parley([
                "send", "--server", server.address, "--user", alice, "--password", "secret", "--to", bob, "live",
            ])
            #expect(live.lines == ["\(bob) accepted-online"], "\(live)")
            try await chat.line { $0 == "[from \(alice)] live" }
            try chat.write("/quit\n")
            #expect(try await chat.waitForExit() == .exit(0), "\(chat.errorOutput)")
        }
    }

    @Test("send --receipt prints the receipt of an online recipient, and exits 6 without one")
    func receipts() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", on: server)
            let receiver = try ChildProcess([
                "receive", "--server", server.address, "--user", bob, "--password", "secret", "--count", "1",
                "--timeout", "30", "--json",
            ])
            try await receiver.line { $0.contains("\"loggedOn\"") }
            let sent = try await parley([
                "send", "--server", server.address, "--user", alice, "--password", "secret", "--to", bob, "--receipt",
                "--json", "please confirm",
            ])
            #expect(sent.status == 0, "\(sent)")
            #expect(try sent.jsonLines().map { $0["event"] as? String } == ["result", "receipt"])
            #expect(try sent.jsonLines().last?["recipient"] as? Int == Int(bob))
            #expect(try await receiver.waitForExit() == .exit(0))

            // Bob is offline now: no receipt within the timeout.
            let unconfirmed = try await parley([
                "send", "--server", server.address, "--user", alice, "--password", "secret", "--to", bob, "--receipt",
                "--timeout", "0.5", "later",
            ])
            #expect(unconfirmed.status == 6, "\(unconfirmed)")
            #expect(unconfirmed.lines == ["\(bob) accepted-offline"])
            #expect(unconfirmed.errorOutput.contains("no delivery receipt"), "\(unconfirmed)")
        }
    }

    @Test("bench reports throughput and latency percentiles")
    func bench() async throws {
        try await withTestServer { server in
            let result = try await parley(
                [
                    "bench", "--server", server.address, "--clients", "4", "--messages", "200", "--size", "64",
                    "--json", "--timeout", "60", "--server-pid", "\(server.process.processIdentifier)",
                ],
                timeout: .seconds(90)
            )
            #expect(result.status == 0, "\(result)")
            let report = try #require(try result.jsonLines().first)
            #expect(report["clients"] as? Int == 4)
            #expect(report["messages"] as? Int == 200)
            #expect(report["size"] as? Int == 64)
            #expect((report["deliveredPerSecond"] as? Double ?? 0) > 0, "\(report)")
            #expect((report["p99Ms"] as? Double ?? 0) > 0, "\(report)")
            #expect((report["p50Ms"] as? Double ?? .infinity) <= (report["p99Ms"] as? Double ?? 0))
            #expect(report["p999Ms"] is Double)
            #expect((report["benchCPUSeconds"] as? Double ?? 0) > 0, "\(report)")
            #expect((report["serverMicrosecondsPerMessage"] as? Double ?? 0) > 0, "\(report)")

            let logons = try await parley(
                ["bench", "--server", server.address, "--clients", "2", "--logons", "6", "--json"],
                timeout: .seconds(90)
            )
            #expect(logons.status == 0, "\(logons)")
            let logonReport = try #require(try logons.jsonLines().first)
            #expect(logonReport["logons"] as? Int == 6)
            #expect((logonReport["logonsPerSecond"] as? Double ?? 0) > 0, "\(logonReport)")
        }
    }

    @Test("bench --lean measures with raw connections: every message delivered once and in order, paced or not")
    func leanBench() async throws {
        try await withDataDirectory { directory in
            let server = try await TestServer.start(dataDirectory: directory, ["--insecure-plaintext"])
            let pid = "\(server.process.processIdentifier)"
            let full = try await parley(
                [
                    "bench", "--lean", "--server", server.address, "--insecure-plaintext", "--clients", "5",
                    "--messages", "1003", "--window", "16", "--size", "64", "--json", "--timeout", "60",
                    "--server-pid", pid,
                ],
                timeout: .seconds(90)
            )
            #expect(full.status == 0, "\(full)")
            let report = try #require(try full.jsonLines().first)
            #expect(report["delivered"] as? Int == 1003, "\(report)")
            #expect(report["failed"] as? Int == 0, "\(report)")
            #expect(report["outOfOrder"] as? Int == 0, "\(report)")
            #expect((report["p50Ms"] as? Double ?? .infinity) <= (report["p99Ms"] as? Double ?? 0), "\(report)")
            #expect((report["benchCPUSeconds"] as? Double ?? -1) >= 0, "\(report)")
            #expect((report["serverMicrosecondsPerMessage"] as? Double ?? 0) > 0, "\(report)")
            #expect((report["serverPeakRSSMiB"] as? Double ?? 0) > 1, "\(report)")

            // Paced: 400 messages offered at 2,000/s take at least 0.2 s from the first send.
            let paced = try await parley(
                [
                    "bench", "--lean", "--server", server.address, "--insecure-plaintext", "--clients", "3",
                    "--messages", "400", "--rate", "2000", "--json", "--timeout", "60",
                ],
                timeout: .seconds(90)
            )
            #expect(paced.status == 0, "\(paced)")
            let pacedReport = try #require(try paced.jsonLines().first)
            #expect(pacedReport["delivered"] as? Int == 400, "\(pacedReport)")
            #expect(pacedReport["offeredPerSecond"] as? Double == 2000, "\(pacedReport)")
            #expect((pacedReport["seconds"] as? Double ?? 0) >= 0.19, "\(pacedReport)")

            // TLS is not what the lean generator speaks: a clear refusal, not a hang.
            let tls = try await parley(["bench", "--lean", "--server", server.address, "--messages", "10"])
            #expect(tls.status != 0, "\(tls)")
            #expect(tls.errorOutput.contains("--insecure-plaintext"), "\(tls)")
            #expect(try await server.stop() == .exit(0), "server: \(server.process.errorOutput)")
        }
    }

    @Test("an acknowledged message survives kill -9 of the server")
    func durability() async throws {
        try await withDataDirectory { directory in
            let first = try await TestServer.start(dataDirectory: directory)
            let alice = try await register("alice", on: first)
            let bob = try await register("bob", on: first)
            let sent = try await parley([
                "send", "--server", first.address, "--user", alice, "--password", "secret", "--to", bob, "durable",
            ])
            #expect(sent.status == 0, "\(sent)")
            first.process.signal(SIGKILL)
            #expect(try await first.process.waitForExit() == .signal(SIGKILL))

            let second = try await TestServer.start(dataDirectory: directory)
            let received = try await parley([
                "receive", "--server", second.address, "--user", bob, "--password", "secret", "--count", "1",
                "--timeout", "20",
            ])
            #expect(received.status == 0, "\(received)")
            #expect(received.lines.count == 1)
            #expect(received.lines.first?.hasSuffix("] durable") == true, "\(received)")
            #expect(try await second.stop() == .exit(0), "\(second.process.errorOutput)")
        }
    }

    @Test("a busy port is an error, and with --port-search the server listens on a later one")
    func busyPort() async throws {
        try await withTestServer { first in
            try await withDataDirectory { directory in
                let refused = try await parley([
                    "server", "--host", "127.0.0.1", "--port", "\(first.port)", "--data", directory.path,
                ])
                #expect(refused.status != 0, "\(refused)")
                #expect(refused.errorOutput.contains("address in use"), "\(refused)")
                #expect(refused.errorOutput.contains("--port-search"), "\(refused)")
                let second = try await TestServer.start(
                    dataDirectory: directory, port: first.port, ["--port-search", "5"])
                #expect(second.port > first.port)
                // The log (standard error) arrives apart from "listening on" (standard output).
                try await second.process.waitForLog(containing: "port \(first.port) is busy")
                #expect(try await second.stop() == .exit(0), "\(second.process.errorOutput)")
            }
        }
    }

    @Test(
        "TLS: a pinned fingerprint, a wrong one refused, trust on first use remembered; secrets from files and the environment"
    )
    func tlsAndSecrets() async throws {
        try await withTestServer { server in
            #expect(server.fingerprint.hasPrefix("sha256:") && server.fingerprint.count == 71, "\(server.fingerprint)")
            let alice = try await register("alice", password: "alice pw", on: server)
            let directory = server.dataDirectory
            let passwordFile = directory.appendingPathComponent("alice.password").path
            try "alice pw\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
            // Pinned, with the password from a file.
            let pinned = try await parley([
                "whois", "--server", server.address, "--user", alice, "--password-file", passwordFile,
                "--server-fingerprint", server.fingerprint, alice,
            ])
            #expect(pinned.status == 0, "\(pinned)")
            // Everything from the environment: no secret on the command line.
            let environment = [
                "PARLEY_SERVER": server.address, "PARLEY_USER": alice, "PARLEY_PASSWORD": "alice pw",
                "PARLEY_SERVER_FINGERPRINT": server.fingerprint,
            ]
            let fromEnvironment = try await parley(["whois", alice], environment: environment)
            #expect(fromEnvironment.status == 0, "\(fromEnvironment)")
            #expect(fromEnvironment.output.contains("alice"), "\(fromEnvironment)")
            // A wrong pin is refused, saying why.
            let wrong = try await parley(
                ["whois", alice],
                environment: environment.merging([
                    "PARLEY_SERVER_FINGERPRINT": "sha256:" + String(repeating: "0", count: 64)
                ]) {
                    _, new in new
                }
            )
            #expect(wrong.status != 0, "\(wrong)")
            #expect(wrong.errorOutput.contains("server-not-trusted"), "\(wrong)")
            // Trust on first use writes the known-servers file.
            let known = directory.appendingPathComponent("known-servers").path
            let firstUse = try await parley([
                "exists", "--server", server.address, "--known-servers", known, alice,
            ])
            #expect(firstUse.status == 0, "\(firstUse)")
            let remembered = try String(contentsOfFile: known, encoding: .utf8)
            #expect(remembered == "\(server.address) \(server.fingerprint)\n")
            // A plaintext client is told the server requires TLS.
            let plaintext = try await parley(["exists", "--server", server.address, "--insecure-plaintext", alice])
            #expect(plaintext.status != 0, "\(plaintext)")
            #expect(plaintext.errorOutput.contains("requires TLS"), "\(plaintext)")
        }
    }

    @Test("SIGTERM shuts the server down gracefully and a connected receiver sees it")
    func gracefulShutdown() async throws {
        try await withDataDirectory { directory in
            let server = try await TestServer.start(dataDirectory: directory)
            let bob = try await register("bob", on: server)
            let receiver = try ChildProcess([
                "receive", "--server", server.address, "--user", bob, "--password", "secret", "--timeout", "20",
                "--json",
            ])
            try await receiver.line { $0.contains("\"loggedOn\"") }

            let serverEnded = try await server.stop()
            // A receiver whose server died keeps reconnecting until its timeout: don't wait for that.
            if serverEnded != .exit(0) { receiver.signal(SIGKILL) }
            let receiverEnded = try await receiver.waitForExit()
            #expect(serverEnded == .exit(0), "\(server.process.errorOutput.suffix(2000))")
            #expect(receiverEnded == .exit(0), "\(receiver.errorOutput)")
            #expect(receiver.outputLines.last?.contains("\"serverShutdown\"") == true, "\(receiver.output)")
        }
    }
}
