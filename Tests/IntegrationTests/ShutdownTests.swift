import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Testing

@Suite("Shutdown and reconnect", .timeLimit(.minutes(1)))
struct ShutdownTests {
    @Test("a graceful shutdown tells every connected client")
    func gracefulShutdown() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                // clients[1] stays a guest; a raw connection has not even said HELLO.
                #expect(try await !clients[1].client.userExists(424_242))
                let raw = try await RawConnection.connect(to: server.address)
                try await raw.ping()

                await server.server.shutdown()

                for test in clients {
                    try await test.waitForEvent("the shutdown notice") { event -> String? in
                        if case .serverShuttingDown(let reason) = event { return reason }
                        return nil
                    }
                    try await test.waitForEvent("the disconnect") { event -> Bool? in
                        if case .connectionStateChanged(.disconnected) = event { return true }
                        return nil
                    }
                }
                let frames = try await raw.waitUntilClosed()
                #expect(frames.map(\.type) == [.pong, .serverShutdown])
            }
        }
    }

    @Test("a client reconnects to a restarted server, logs on again and delivers what was sent meanwhile")
    func reconnect() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let logger = makeTestLogger("parley.server")
        let first = ParleyServer(
            configuration: makeServerConfiguration(dataDirectory: directory.path, port: try portForRestartTests()),
            logger: logger
        )

        let firstStopped = Mailbox<Never>()
        let secondStopped = Mailbox<Never>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { firstStopped.finish() }
                try await first.run()
            }
            let address = try await withTimeout("the first server to listen") { try await first.listeningAddress }
            var second = ParleyServer(
                configuration: makeServerConfiguration(dataDirectory: directory.path, port: address.port),
                logger: logger
            )
            do {
                try await withTestClients(3, of: makeClientConfiguration(first, address)) {
                    clients in
                    let alice = try await clients[0].register("alice", password: "pw-a")
                    let bob = try await clients[1].register("bob", password: "pw-b")
                    // The re-logon after the restart must use the changed password.
                    try await clients[0].client.changePassword(from: "pw-a", to: "pw-a2")
                    // Carol is offline: her message waits in the database across the restart.
                    let carol = try await clients[2].register("carol", password: "pw-c")
                    try await clients[2].client.logOff()
                    let stored = try await clients[1].client.send(.text("stored before the restart"), to: [carol])
                    #expect(stored.map(\.status) == [.acceptedOffline])
                    let before = clients.map { $0.events.items.count }

                    await first.shutdown()
                    for (test, skip) in zip(clients, before) {
                        try await test.waitForEvent("the shutdown notice", after: skip) { event -> Bool? in
                            if case .serverShuttingDown = event { return true }
                            return nil
                        }
                    }
                    // The first server is gone for good before the message is sent.
                    try await firstStopped.waitUntilFinished("the first server to stop")

                    async let outage = clients[1].client.send(.text("sent during the outage"), to: [alice], id: 4242)

                    // The port can be briefly taken by a client socket that the kernel happened to
                    // give that same local port while reconnecting (loopback self-connect), so a
                    // failed bind is retried with a fresh server, a few times.
                    var restarted: ListeningAddress?
                    for attempt in 1...10 {
                        let candidate =
                            attempt == 1
                            ? second
                            : ParleyServer(
                                configuration: makeServerConfiguration(
                                    dataDirectory: directory.path, port: address.port),
                                logger: logger
                            )
                        second = candidate
                        group.addTask {
                            do {
                                try await candidate.run()
                            } catch {
                                // Only a server that was listening counts as the second server.
                                guard (try? await candidate.listeningAddress) != nil else { return }
                                secondStopped.finish()
                                throw error
                            }
                            secondStopped.finish()
                        }
                        restarted = try? await withTimeout("the second server to listen") {
                            try await candidate.listeningAddress
                        }
                        if restarted != nil { break }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    if restarted == nil {
                        let holders = await socketsUsing(port: address.port)
                        Issue.record("port \(address.port) stayed busy: \(holders)")
                    }
                    #expect(restarted?.port == address.port)

                    let results = try await outage
                    #expect(results.count == 1)
                    #expect(results.first?.isAccepted == true)

                    // Both clients logged on again by themselves.
                    for (test, (user, skip)) in zip(clients, zip([alice, bob], before)) {
                        try await test.waitForEvent("logging on again", after: skip) { event -> Bool? in
                            event == .connectionStateChanged(.loggedOn(user)) ? true : nil
                        }
                    }
                    let messages = try await clients[0].waitForMessages(1)
                    #expect(messages[0].id == 4242)
                    #expect(messages[0].sender == bob)
                    #expect(messages[0].body == .text("sent during the outage"))
                    #expect(clients[0].client.loggedOnUser == alice)
                    #expect(try await clients[0].client.isOnline(bob))

                    // Carol's client reconnected as the guest it was; she logs on to the new server.
                    let logon = try await clients[2].client.logOn(userID: carol, password: "pw-c")
                    #expect(logon.storedMessages == 1)
                    let carols = try await clients[2].waitForMessages(1)
                    #expect(carols.map(\.body) == [.text("stored before the restart")])
                }
            } catch {
                await first.shutdown()
                await second.shutdown()
                try? await group.waitForAll()
                throw error
            }
            await second.shutdown()
            try await secondStopped.waitUntilFinished("the second server to stop")
            try await group.waitForAll()
        }
    }
}

/// What holds a port, for diagnosing a failed re-bind (from `ss`).
private func socketsUsing(port: Int) async -> String {
    let output: String
    do {
        output = try await SpawnedProcess.run("/usr/bin/ss", ["-tanpe"], timeout: .seconds(10)).output
    } catch {
        return "ss failed: \(error)"
    }
    let lines = output.split(separator: "\n").filter { $0.contains(":\(port) ") }
    return lines.joined(separator: " | ")
}
