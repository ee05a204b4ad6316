public import Logging
public import ParleyClient
import ParleyCore
public import ParleyServer
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A running in-process server as the tests see it: the server and the loopback address it
/// listens on (a port the system chose unless the test named one).
public struct TestServer: Sendable {
    /// The running server.
    public let server: ParleyServer
    /// Where it listens.
    public let address: ListeningAddress

    /// Wraps a server that listens at `address`.
    public init(server: ParleyServer, address: ListeningAddress) {
        self.server = server
        self.address = address
    }

    /// A client configuration for this server: TLS pinned to its certificate, generous timeouts.
    public var clientConfiguration: ParleyClient.Configuration {
        makeClientConfiguration(server, address)
    }
}

/// A client configuration for `server` at `address`: TLS, pinned to the server's certificate.
public func makeClientConfiguration(_ server: ParleyServer, _ address: ListeningAddress) -> ParleyClient.Configuration {
    var configuration = ParleyClient.Configuration(host: address.host, port: address.port)
    // A full CI run starts every suite at once on two cores: a request can wait longer than the
    // `.local` 10 s there without anything being wrong. No test here waits for a timeout.
    configuration.retry.requestTimeout = .seconds(30)
    // The same for a connect and its TLS handshake (`.local` gives 1 s).
    configuration.retry.connectTimeout = .seconds(10)
    if let fingerprint = server.tlsCertificateFingerprint {
        configuration.security = .tls(.fingerprint(fingerprint))
    } else {
        configuration.security = .insecurePlaintext
    }
    return configuration
}

/// The configuration every test server starts from: loopback, a port the system picks, a fast
/// password hash, no search for another port.
public func makeServerConfiguration(dataDirectory: String, port: Int = 0) -> ParleyServer.Configuration {
    var configuration = ParleyServer.Configuration(dataDirectory: dataDirectory)
    configuration.host = "127.0.0.1"
    configuration.port = port
    configuration.portSearchLimit = 1
    configuration.passwordCost = .insecureFastForTesting
    configuration.serverName = "parley-tests"
    return configuration
}

/// Changes a test applies to ``makeServerConfiguration(dataDirectory:port:)``.
public struct ServerChanges {
    /// Applies the changes.
    public let apply: (inout ParleyServer.Configuration) -> Void

    /// Changes made by `apply`.
    public init(_ apply: @escaping (inout ParleyServer.Configuration) -> Void) {
        self.apply = apply
    }

    /// No change.
    public static var none: ServerChanges { ServerChanges { _ in } }
}

/// Runs a real server (own data directory unless one is given) for the duration of `body`.
///
/// On a given port, a server that finds the port taken is started again, a few times: the
/// port can be briefly taken after the server before it on that port stopped (seen once in a
/// full CI run; see also ``restartTestServer(dataDirectory:port:logger:in:servers:)``).
public func withTestServer<T: Sendable>(
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
    var attempt = 1
    while true {
        do {
            return try await runTestServer(configuration, body)
        } catch let taken as PortTaken {
            guard port != 0, attempt < 20 else { throw taken.error }
            attempt += 1
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// A server could not listen on its given port: another socket holds it.
private struct PortTaken: Error {
    var error: ParleyError
}

private func runTestServer<T: Sendable>(
    _ configuration: ParleyServer.Configuration,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (TestServer) async throws -> T
) async throws -> T {
    let server = ParleyServer(configuration: configuration, logger: makeTestLogger("parley.server"))
    let stopped = Mailbox<Never>()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            defer { stopped.finish() }
            try await server.run()
        }
        do {
            let address: ListeningAddress
            do {
                address = try await withTimeout("the server to listen") { try await server.listeningAddress }
            } catch let error as ParleyError where error.message.hasPrefix("address in use") {
                throw PortTaken(error: error)
            }
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

/// The ports ``portForRestartTests()`` handed out in this process.
private let restartTestPorts = Mutex<Set<Int>>([])

/// A free loopback port below the kernel's ephemeral range (32768-60999 here), for tests that
/// restart a server on the same port. Ports handed out by `bind(port: 0)` elsewhere in the suite,
/// and local ports of connecting clients (a loopback self-connect), always come from the
/// ephemeral range, so they can never take this port during the restart. A port is handed out
/// once per process: two tests running at the same time could otherwise draw the same free port
/// and take it from each other between their restarts.
public func portForRestartTests() throws -> Int {
    for _ in 0..<200 {
        let port = Int.random(in: 20_000..<32_000)
        guard restartTestPorts.withLock({ $0.insert(port).inserted }) else { continue }
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { continue }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if bound == 0 { return port }
    }
    throw ParleyError(code: .internalError, message: "no free port in 20000..<32000")
}

/// Starts a server again on `port` with the data directory of one that stopped, in `group`;
/// appends every server it creates to `servers` (to shut them down). Returns whether one listens.
///
/// The port can be briefly taken by a reconnecting client's own socket (loopback self-connect):
/// a failed bind is retried with a fresh server, a few times.
public func restartTestServer(
    dataDirectory: String,
    port: Int,
    logger: Logger,
    in group: inout ThrowingTaskGroup<Void, any Error>,
    servers: inout [ParleyServer]
) async throws -> Bool {
    for _ in 1...10 {
        let candidate = ParleyServer(
            configuration: makeServerConfiguration(dataDirectory: dataDirectory, port: port),
            logger: logger
        )
        servers.append(candidate)
        group.addTask {
            do {
                try await candidate.run()
            } catch {
                // Only a server that was listening counts as the restarted server.
                guard (try? await candidate.listeningAddress) != nil else { return }
                throw error
            }
        }
        if (try? await withTimeout("the restarted server to listen") { try await candidate.listeningAddress }) != nil {
            return true
        }
        try await Task.sleep(for: .milliseconds(100))
    }
    return false
}

/// Runs a real server on a port it can start again on (``portForRestartTests()``), for tests of
/// what clients do across a restart; every server is shut down afterwards.
///
/// `body` gets the first server, its data directory, and `restart`: it shuts the first server
/// down, waits until it is gone (its listener closed), runs `whileStopped`, then starts a server
/// again on the same port with the same data directory (so the same certificate: a client pinned
/// to the first trusts it), and returns whether one listens.
public func withRestartableServer<T: Sendable>(
    isolation: isolated (any Actor)? = #isolation,
    _ body: (
        _ first: TestServer,
        _ dataDirectory: String,
        _ restart: (_ whileStopped: () async throws -> Void) async throws -> Bool
    ) async throws -> T
) async throws -> T {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let logger = makeTestLogger("parley.server")
    let first = ParleyServer(
        configuration: makeServerConfiguration(dataDirectory: directory.path, port: try portForRestartTests()),
        logger: logger
    )
    let firstStopped = Mailbox<Never>()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            defer { firstStopped.finish() }
            try await first.run()
        }
        var servers = [first]
        do {
            let address = try await withTimeout("the first server to listen") { try await first.listeningAddress }
            let result = try await body(TestServer(server: first, address: address), directory.path) {
                whileStopped in
                await first.shutdown()
                try await firstStopped.waitUntilFinished("the first server to stop")
                try await whileStopped()
                return try await restartTestServer(
                    dataDirectory: directory.path, port: address.port, logger: logger,
                    in: &group, servers: &servers
                )
            }
            for server in servers { await server.shutdown() }
            try await group.waitForAll()
            return result
        } catch {
            for server in servers { await server.shutdown() }
            try? await group.waitForAll()
            throw error
        }
    }
}
