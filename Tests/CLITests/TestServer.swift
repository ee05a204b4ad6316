import Foundation
import ParleyTesting
import Testing

/// A `parley server` child process on 127.0.0.1 and a port the system chose.
struct TestServer: Sendable {
    let process: ChildProcess
    let dataDirectory: URL
    let port: Int
    /// The certificate's fingerprint, as the server printed it ("tls fingerprint sha256:..."); empty
    /// for a server started with `--insecure-plaintext`.
    let fingerprint: String

    var address: String { "127.0.0.1:\(port)" }

    /// Starts a server and waits until it prints `listening on HOST:PORT`.
    ///
    /// A low password cost keeps registrations and logons quick.
    static func start(dataDirectory: URL, port: Int = 0, _ extra: [String] = []) async throws -> TestServer {
        let process = try ChildProcess(
            [
                "server", "--host", "127.0.0.1", "--port", "\(port)", "--data", dataDirectory.path, "--password-cost",
                "8",
            ] + extra
        )
        let line = try await process.line { $0.hasPrefix("listening on ") }
        // A plaintext server has no certificate to print.
        let fingerprint =
            extra.contains("--insecure-plaintext")
            ? ""
            : try await process.line { $0.hasPrefix("tls fingerprint ") }.dropFirst("tls fingerprint ".count)
        guard let separator = line.lastIndex(of: ":"), let port = Int(line[line.index(after: separator)...]) else {
            throw TestFailure("cannot read the port from \"\(line)\"")
        }
        return TestServer(process: process, dataDirectory: dataDirectory, port: port, fingerprint: String(fingerprint))
    }

    /// Stops the server with SIGTERM (graceful shutdown) and returns how it ended.
    @discardableResult
    func stop() async throws -> Termination {
        process.signal(SIGTERM)
        return try await process.waitForExit(timeout: .seconds(30))
    }
}

/// A fresh data directory for one test, removed afterwards.
func withDataDirectory<T>(_ body: (URL) async throws -> T) async throws -> T {
    let directory = try TemporaryDirectory(prefix: "parley-cli-tests")
    defer {
        do {
            try FileManager.default.removeItem(at: directory.url)
        } catch {
            Issue.record("could not remove \(directory.path): \(error)")
        }
    }
    return try await body(directory.url)
}

/// Runs `body` with a started server; afterwards stops it with SIGTERM and expects exit 0.
func withTestServer<T>(_ body: (TestServer) async throws -> T) async throws -> T {
    try await withDataDirectory { directory in
        let server = try await TestServer.start(dataDirectory: directory)
        let result: T
        do {
            result = try await body(server)
        } catch {
            server.process.signal(SIGKILL)
            try await server.process.waitForExit()
            throw error
        }
        let termination = try await server.stop()
        #expect(termination == .exit(0), "server: \(server.process.errorOutput)")
        return result
    }
}
