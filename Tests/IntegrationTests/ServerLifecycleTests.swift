import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import Testing

@Suite("Server lifecycle", .timeLimit(.minutes(1)))
struct ServerLifecycleTests {
    @Test("several tasks can wait for the listening address at once")
    func concurrentListeningAddress() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let server = ParleyServer(
            configuration: makeServerConfiguration(dataDirectory: directory.path),
            logger: makeTestLogger("parley.server")
        )
        let addresses = Mailbox<ListeningAddress>()
        let stopped = Mailbox<Never>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            // The waiters start before run(), so they really wait.
            for _ in 0..<4 {
                group.addTask { addresses.append(try await server.listeningAddress) }
            }
            group.addTask {
                defer { stopped.finish() }
                try await server.run()
            }
            let all = try await addresses.wait(for: "4 addresses") { items, _ in items.count == 4 ? items : nil }
            #expect(Set(all).count == 1)
            #expect(all.first?.port != 0)
            #expect(try await server.listeningAddress == all.first)
            await server.shutdown()
            try await stopped.waitUntilFinished("the server to stop")
            try await group.waitForAll()
        }
    }

    @Test("a busy port fails run() and listeningAddress when the port search is off, and is skipped when on")
    func busyPort() async throws {
        try await withTestServer { first in
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let busy = ParleyServer(
                configuration: makeServerConfiguration(dataDirectory: directory.path, port: first.address.port),
                logger: makeTestLogger("parley.server")
            )
            let runError = await #expect(throws: ParleyError.self) { try await busy.run() }
            #expect(runError?.code == .internalError)
            let addressError = await #expect(throws: ParleyError.self) { try await busy.listeningAddress }
            #expect(addressError?.code == .internalError)

            try await withTestServer(
                dataDirectory: directory,
                port: first.address.port,
                ServerChanges { $0.portSearchLimit = 20 }
            ) { second in
                #expect(second.address.port > first.address.port)
                #expect(second.address.port < first.address.port + 20)
                try await withTestClient(of: second.clientConfiguration) { test in
                    let alice = try await test.register("alice")
                    #expect(alice == 1000)
                }
            }
        }
    }

    @Test("run() after shutdown() fails instead of serving, and nobody waits forever")
    func runAfterShutdown() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let server = ParleyServer(
            configuration: makeServerConfiguration(dataDirectory: directory.path),
            logger: makeTestLogger("parley.server")
        )
        await server.shutdown()
        await #expect(throws: ParleyError.self) { try await server.run() }
        await #expect(throws: ParleyError.self) {
            try await withTimeout("the listening address") { try await server.listeningAddress }
        }
    }

    @Test(
        "an invalid configuration fails run()",
        arguments: ["idle timeout", "frame size", "connections", "window", "minimum ID", "block size", "cost"]
    )
    func invalidConfiguration(problem: String) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = makeServerConfiguration(dataDirectory: directory.path)
        switch problem {
        case "idle timeout":
            configuration.idleTimeout = .seconds(1)
            configuration.heartbeatInterval = .seconds(2)
        case "frame size": configuration.maximumFrameSize = 100
        case "connections": configuration.maximumConnections = 0
        case "window": configuration.deliveryWindow = 0
        case "minimum ID": configuration.minimumUserID = 0
        case "block size": configuration.passwordCost.blockSize = 100
        default: configuration.passwordCost = .init(log2N: 22, blockSize: 8, parallelism: 1)
        }
        let server = ParleyServer(configuration: configuration, logger: makeTestLogger("parley.server"))
        let error = await #expect(throws: ParleyError.self) { try await server.run() }
        #expect(error?.code == .invalidRequest)
        let addressError = await #expect(throws: ParleyError.self) { try await server.listeningAddress }
        #expect(addressError?.code == .invalidRequest)
    }
}
