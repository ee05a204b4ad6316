import Foundation
import Logging
import ParleyClient
import ParleyCore

/// One bench client and the fresh user it is logged on as.
struct BenchParticipant: Sendable {
    var client: ParleyClient
    var user: UserID
    var password: String
}

/// The clients of a bench run: each registers a fresh user (a random name prefix keeps runs
/// apart) and stays logged on for the length of a closure.
struct BenchParticipants {
    var count: Int
    var configuration: ParleyClient.Configuration
    var logger: Logger
    /// Registering must be done by then.
    var deadline: ContinuousClock.Instant

    /// Runs `count` clients, registers a user on each, hands them to `body`, then shuts them down.
    func withLoggedOnClients<Result: Sendable>(
        _ body: ([BenchParticipant]) async throws -> Result
    ) async throws -> Result {
        let clients = (0..<count).map { _ in ParleyClient(configuration: configuration, logger: logger) }
        let prefix = "bench-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let password = "bench-\(UInt64.random(in: 0...UInt64.max))"
        return try await withThrowingTaskGroup(of: Void.self) { runners in
            // Started in waves: thousands of TLS handshakes at once overrun the clients' 1 s
            // connect timeout on a small machine.
            for (index, client) in clients.enumerated() {
                runners.addTask { try await client.run() }
                if index % 25 == 24 { try await Task.sleep(for: .milliseconds(100)) }
            }
            do {
                let participants = try await register(clients, prefix: prefix, password: password)
                let result = try await body(participants)
                for client in clients { client.shutdown() }
                try await runners.waitForAll()
                return result
            } catch {
                for client in clients { client.shutdown() }
                // A failed connection explains the failure best: waitForAll throws it first.
                try await runners.waitForAll()
                throw error
            }
        }
    }

    private func register(
        _ clients: [ParleyClient],
        prefix: String,
        password: String
    ) async throws -> [BenchParticipant] {
        do {
            return try await withDeadline(deadline) {
                try await Self.register(clients, prefix: prefix, password: password)
            }
        } catch {
            guard ContinuousClock.now < deadline else {
                throw CommandFailure(
                    message: "registering \(clients.count) users did not finish within the timeout",
                    exitCode: ExitStatus.incomplete
                )
            }
            throw error
        }
    }

    static let registrationsInFlight = 32

    private static func register(
        _ clients: [ParleyClient],
        prefix: String,
        password: String
    ) async throws -> [BenchParticipant] {
        try await withThrowingTaskGroup(of: (Int, BenchParticipant).self) { group in
            func add(_ index: Int) {
                let client = clients[index]
                group.addTask {
                    let info = try await client.register(UserInfo(userName: "\(prefix)-\(index)"), password: password)
                    return (index, BenchParticipant(client: client, user: info.userID, password: password))
                }
            }
            // A bounded number in flight: at the default password cost the server hashes about
            // 65 passwords a second, and registrations queued behind more would time out.
            var next = min(Self.registrationsInFlight, clients.count)
            for index in 0..<next { add(index) }
            var participants: [BenchParticipant?] = Array(repeating: nil, count: clients.count)
            for try await (index, participant) in group {
                participants[index] = participant
                if next < clients.count {
                    add(next)
                    next += 1
                }
            }
            return participants.compactMap { $0 }
        }
    }
}
