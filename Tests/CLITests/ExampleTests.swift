import Foundation
import Testing

import class ParleyTesting.SpawnedProcess

/// The examples are complete programs: each must run to its end and say what it promises.
@Suite("examples", .timeLimit(.minutes(1)))
struct ExampleTests {
    @Test("node-pair: the first message goes direct, and the nodes keep talking after the server stops")
    func nodePair() async throws {
        let output = try await runExample("example-node-pair")
        for line in [
            "ada -> ben: direct", "ben <- 1000 via direct: hello ben", "ben -> ada: direct",
            "ada <- 1001 via direct: the server stopped, we still talk",
        ] {
            #expect(output.contains(line), "missing \"\(line)\" in:\n\(output)")
        }
    }

    @Test("echo-bot: the server application answers")
    func echoBot() async throws {
        let output = try await runExample("example-echo-bot")
        #expect(output.contains("the server answered: HELLO, SERVER"), "\(output)")
    }

    @Test(
        "notice-bot: the application greets at logon, answers a message and the time command, and the server broadcasts"
    )
    func noticeBot() async throws {
        let output = try await runExample("example-notice-bot")
        for line in [
            "alice got: welcome, user ", "alice got: the server's time is ",
            "alice's time command: the server's time is ", "broadcast to 1 online user(s)",
            "alice got: notice: the server restarts at 18:00",
        ] {
            #expect(output.contains(line), "missing \"\(line)\" in:\n\(output)")
        }
    }

    /// Runs `.build/debug/NAME` to its end (at most 30 s) and returns its standard output.
    private func runExample(_ name: String) async throws -> String {
        let executable = ChildProcess.executable.deletingLastPathComponent().appendingPathComponent(name)
        try #require(FileManager.default.isExecutableFile(atPath: executable.path), "build \(name) first")
        let (termination, output, _) = try await SpawnedProcess.run(executable.path, [], timeout: .seconds(30))
        #expect(termination == .exit(0), "\(name) failed (\(termination)):\n\(output)")
        return output
    }
}
