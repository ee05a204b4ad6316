import Foundation
import Testing

import class ParleyTesting.SpawnedProcess

@Suite("parley admin", .timeLimit(.minutes(2)))
struct AdminCLITests {
    private func register(_ name: String, on server: TestServer, _ extra: [String] = []) async throws -> String {
        let result = try await parley(
            ["register", "--server", server.address, "--name", name, "--password", "pw"] + extra)
        try #require(result.status == 0, "\(result)")
        return try #require(result.lines.first)
    }

    private func admin(_ arguments: [String], on server: TestServer) async throws -> CommandResult {
        try await parley(["admin", "--data", server.dataDirectory.path] + arguments)
    }

    @Test("users, sessions, counts, kick, last-seen, contacts, reserve-id and delete-user over the admin socket")
    func adminCommands() async throws {
        try await withTestServer { server in
            let alice = try await register("alice", on: server)
            let bob = try await register("bob", on: server)

            let table = try await admin(["users", "--sort", "name"], on: server)
            #expect(table.status == 0, "\(table)")
            #expect(table.lines.count == 3, "\(table)")
            #expect(table.lines.first?.hasPrefix("ID") == true)
            #expect(table.lines.dropFirst().map { $0.split(separator: " ").first.map(String.init) } == [alice, bob])
            // Aligned: every row's second column starts where the header's does.
            let header = try #require(table.lines.first, "\(table)")
            let column = try #require(header.range(of: "NAME")?.lowerBound.utf16Offset(in: header))
            for row in table.lines.dropFirst() {
                #expect(row.dropFirst(column).hasPrefix("alice") || row.dropFirst(column).hasPrefix("bob"), "\(row)")
            }
            let descending = try await admin(["users", "--json", "--sort", "name", "--descending"], on: server)
            #expect(try descending.jsonLines().map { $0["userID"] as? Int } == [Int(bob), Int(alice)])

            // bob stays logged on.
            let receiver = try ChildProcess(
                ["receive", "--json", "--server", server.address, "--user", bob, "--password", "pw"])
            defer { receiver.signal(SIGKILL) }
            try await receiver.line { $0.contains("\"loggedOn\"") }
            let sessions = try await admin(["sessions", "--json"], on: server)
            let session = try #require(try sessions.jsonLines().first, "\(sessions)")
            #expect(session["userID"] as? Int == Int(bob))
            #expect((session["address"] as? String)?.hasPrefix("127.0.0.1:") == true)
            #expect((session["application"] as? String)?.hasPrefix("parley") == true)
            let counts = try await admin(["counts", "--json"], on: server)
            let countsRecord = try #require(try counts.jsonLines().first, "\(counts)")
            #expect(countsRecord["users"] as? Int == 2)
            #expect(countsRecord["online"] as? Int == 1)

            let kicked = try await admin(["kick", bob, "--reason", "maintenance until 18:00"], on: server)
            #expect(kicked.lines == ["kicked user \(bob)"], "\(kicked)")
            let receiverEnd = try await receiver.waitForExit(timeout: .seconds(20))
            #expect(receiverEnd == .exit(4), "\(receiver.errorOutput)")
            #expect(receiver.errorOutput.contains("maintenance until 18:00"), "\(receiver.errorOutput)")
            // The server ends the session once its TLS closes, which can come after the client
            // saw the error: wait until the session list is empty (20 ms apart, at most 10 s).
            for _ in 0..<500 {
                guard try await !admin(["sessions", "--json"], on: server).lines.isEmpty else { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let notOnline = try await admin(["kick", bob], on: server)
            #expect(notOnline.status == 1)
            #expect(notOnline.errorOutput.contains("not logged on"), "\(notOnline)")

            let seen = try await admin(["last-seen", "--json", bob], on: server)
            let seenRecord = try #require(try seen.jsonLines().first, "\(seen)")
            #expect(seenRecord["lastLogonAt"] is String)

            let added = try await admin(["contacts", alice, "--add", bob, "--name", "Bobby"], on: server)
            #expect(added.lines == ["\(bob) Bobby (bob) custom(Bobby)"], "\(added)")
            let listed = try await admin(["contacts", alice], on: server)
            #expect(listed.lines == ["\(bob) Bobby (bob) custom(Bobby)"], "\(listed)")
            let removed = try await admin(["contacts", alice, "--remove", bob], on: server)
            #expect(removed.lines == ["removed \(bob)"], "\(removed)")

            let reserved = try await admin(["reserve-id", "5000"], on: server)
            #expect(reserved.lines == ["reserved user ID 5000"], "\(reserved)")
            let refused = try await parley(
                ["register", "--server", server.address, "--name", "x", "--password", "pw", "--user-id", "5000"])
            #expect(refused.status == 4, "\(refused)")
            #expect(refused.errorOutput.contains("reserved"), "\(refused)")
            #expect(try await admin(["reserve-id", "--list"], on: server).lines == ["5000"])
            #expect(
                try await admin(["reserve-id", "--release", "5000"], on: server).lines == ["released user ID 5000"])

            let deleted = try await admin(["delete-user", alice], on: server)
            #expect(deleted.lines == ["deleted user \(alice)"], "\(deleted)")
            let again = try await admin(["delete-user", "--json", alice], on: server)
            #expect(again.status == 4, "\(again)")
            #expect(again.errorOutput.contains("user-not-found"), "\(again)")
            let left = try await admin(["users", "--json"], on: server)
            #expect(try left.jsonLines().map { $0["userID"] as? Int } == [Int(bob)])
        }
    }

    @Test("the admin socket is 0600, refuses another user, and is never made over another file")
    func permissions() async throws {
        try await withTestServer { server in
            let socket = server.dataDirectory.appendingPathComponent("admin.sock").path
            let attributes = try FileManager.default.attributesOfItem(atPath: socket)
            #expect(attributes[.type] as? FileAttributeType == .typeSocket)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            let wrongSocket = try await parley(["admin", "--socket", socket + ".missing", "counts"])
            #expect(wrongSocket.status == 3, "\(wrongSocket)")

            guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
                print("skipping the other-user checks: they need root and setpriv")
                return
            }
            // The file mode keeps `nobody` out...
            let denied = try await Self.asNobody(["admin", "--socket", socket, "counts"])
            #expect(denied.status == 3, "\(denied)")
            #expect(denied.errorOutput.contains("Permission denied"), "\(denied)")
            // ...and so does the server's SO_PEERCRED check when the mode is opened up.
            #expect(chmod(socket, 0o666) == 0)
            let refused = try await Self.asNobody(["admin", "--socket", socket, "counts"])
            #expect(refused.status == 4, "\(refused)")
            #expect(refused.errorOutput.contains("only the server's user and root"), "\(refused)")
            #expect(try await parley(["admin", "--socket", socket, "counts"]).status == 0)
        }
        try await withDataDirectory { directory in
            let file = directory.appendingPathComponent("not-a-socket")
            try Data("keep me".utf8).write(to: file)
            let refused = try await parley(
                ["server", "--host", "127.0.0.1", "--port", "0", "--data", directory.path, "--admin-socket", file.path])
            #expect(refused.status == 1, "\(refused)")
            #expect(refused.errorOutput.contains("admin socket"), "\(refused)")
            #expect(try String(contentsOf: file, encoding: .utf8) == "keep me")

            let off = try await TestServer.start(dataDirectory: directory, ["--admin-socket", "off"])
            #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("admin.sock").path))
            #expect(try await off.stop() == .exit(0))
        }
    }

    /// Runs `parley` as the user `nobody` (uid and gid 65534, no groups) to its end.
    private static func asNobody(_ arguments: [String]) async throws -> CommandResult {
        let (termination, output, errorOutput) = try await SpawnedProcess.run(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", ChildProcess.executable.path] + arguments,
            timeout: .seconds(30)
        )
        return CommandResult(termination: termination, output: output, errorOutput: errorOutput)
    }
}
