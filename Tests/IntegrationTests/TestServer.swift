import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyServer

/// A logger that is silent unless PARLEY_TEST_LOGS is set (then it logs at debug level).
func makeTestLogger(_ label: String) -> Logger {
    guard ProcessInfo.processInfo.environment["PARLEY_TEST_LOGS"] != nil else {
        return Logger(label: label, factory: { _ in SwiftLogNoOpLogHandler() })
    }
    var logger = Logger(label: label, factory: { StreamLogHandler.standardError(label: $0) })
    logger.logLevel = .debug
    return logger
}

/// A fresh directory under the system's temporary directory, removed by ``remove()``.
struct TemporaryDirectory: Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("parley-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    var path: String { url.path }

    func remove() {
        do {
            try FileManager.default.removeItem(at: url)
        } catch {
            print("could not remove \(path): \(error)")
        }
    }
}

/// A running server as the tests see it.
struct TestServer: Sendable {
    let server: ParleyServer
    let address: ListeningAddress

    var clientConfiguration: ParleyClient.Configuration {
        ParleyClient.Configuration(host: address.host, port: address.port)
    }
}

/// The configuration every test server starts from: loopback, a port the system picks, a fast
/// password hash, no search for another port.
func makeServerConfiguration(dataDirectory: String, port: Int = 0) -> ParleyServer.Configuration {
    var configuration = ParleyServer.Configuration(dataDirectory: dataDirectory)
    configuration.host = "127.0.0.1"
    configuration.port = port
    configuration.portSearchLimit = 1
    configuration.passwordCost = .insecureFastForTesting
    configuration.serverName = "parley-tests"
    return configuration
}

/// Changes a test applies to ``makeServerConfiguration(dataDirectory:port:)``.
struct ServerChanges {
    let apply: (inout ParleyServer.Configuration) -> Void

    init(_ apply: @escaping (inout ParleyServer.Configuration) -> Void) {
        self.apply = apply
    }

    static var none: ServerChanges { ServerChanges { _ in } }
}

/// Runs a real server (own data directory unless one is given) for the duration of `body`.
func withTestServer<T: Sendable>(
    dataDirectory: TemporaryDirectory? = nil,
    port: Int = 0,
    _ changes: ServerChanges = .none,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (TestServer) async throws -> T
) async throws -> T {
    let directory = try dataDirectory ?? TemporaryDirectory()
    defer { if dataDirectory == nil { directory.remove() } }
    var configuration = makeServerConfiguration(dataDirectory: directory.path, port: port)
    changes.apply(&configuration)
    let server = ParleyServer(configuration: configuration, logger: makeTestLogger("parley.server"))
    let stopped = Mailbox<Never>()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            defer { stopped.finish() }
            try await server.run()
        }
        do {
            let address = try await withTimeout("the server to listen") { try await server.listeningAddress }
            let result = try await body(TestServer(server: server, address: address))
            await server.shutdown()
            try await stopped.waitUntilFinished("the server to stop")
            try await group.waitForAll()
            return result
        } catch {
            await server.shutdown()
            try? await group.waitForAll()
            throw error
        }
    }
}
