import Foundation
import ParleyClient
import ParleyCore

/// `parley bench --presence-logon N` and `--presence-fanout M`: what contact lists and presence
/// cost (docs/PROTOCOL.md section 23).
extension BenchCommand {
    /// A user whose `contacts` contacts are all online logs on, `rounds` times: the time from the
    /// LOGON request until the client knows every contact's presence (the PRESENCE snapshot).
    static func measurePresenceLogon(
        contacts: Int,
        rounds: Int,
        participants: [BenchParticipant],
        deadline: ContinuousClock.Instant
    ) async throws -> PresenceLogonReport {
        let subject = participants[0]
        let others = participants.dropFirst().map(\.user)
        try await addContacts(others, to: subject.client)
        var events = subject.client.events.makeAsyncIterator()
        var times: [Double] = []
        for _ in 0..<rounds {
            try await subject.client.logOff()
            let start = ContinuousClock.now
            _ = try await subject.client.logOn(userID: subject.user, password: subject.password)
            while true {
                guard ContinuousClock.now < deadline, let event = await events.next() else {
                    throw CommandFailure(message: "no presence snapshot arrived", exitCode: ExitStatus.incomplete)
                }
                // Earlier snapshots (the registration's, with no contacts yet) do not count.
                guard case .presence(let update) = event, update.isSnapshot, update.contacts?.count == contacts
                else { continue }
                let known = others.filter { update.presences[$0]?.state == .online }.count
                guard known == contacts else {
                    throw CommandFailure(
                        message: "the snapshot showed \(known) of \(contacts) contacts online",
                        exitCode: ExitStatus.incomplete
                    )
                }
                break
            }
            times.append(Double((ContinuousClock.now - start).nanoseconds) / 1e6)
        }
        return PresenceLogonReport(contacts: contacts, rounds: rounds, milliseconds: times)
    }

    /// `watchers` users have one user in their contacts; it changes its state `changes` times,
    /// one change at a time: the time until the last watcher has each change, and the server's
    /// CPU time per PRESENCE event it pushed.
    static func measurePresenceFanout(
        watchers: Int,
        changes: Int,
        participants: [BenchParticipant],
        serverPID: Int32?,
        deadline: ContinuousClock.Instant
    ) async throws -> PresenceFanoutReport {
        let subject = participants[0]
        let watching = Array(participants.dropFirst())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for watcher in watching {
                group.addTask { _ = try await watcher.client.addContact(subject.user) }
            }
            try await group.waitForAll()
        }
        // Each watcher reports the moment it sees change k (carried in the status text).
        let (arrivals, arrived) = AsyncStream.makeStream(of: Int.self)
        let watcherTasks = Task {
            await withTaskGroup(of: Void.self) { group in
                for watcher in watching {
                    group.addTask {
                        var seen = 0
                        for await event in watcher.client.events {
                            guard case .presence(let update) = event, !update.isSnapshot,
                                let presence = update.presences[subject.user],
                                let change = Int(presence.text.dropFirst("change-".count)), change > seen
                            else { continue }
                            seen = change
                            arrived.yield(change)
                            if change == changes { return }
                        }
                    }
                }
            }
        }
        defer { watcherTasks.cancel() }
        let serverStart = serverPID.flatMap(CPUUsage.seconds(ofProcess:))
        var times: [Double] = []
        var iterator = arrivals.makeAsyncIterator()
        for change in 1...changes {
            let start = ContinuousClock.now
            try await subject.client.setPresence(change % 2 == 0 ? .online : .away, text: "change-\(change)")
            var count = 0
            while count < watchers {
                guard ContinuousClock.now < deadline, let seen = await iterator.next() else {
                    throw CommandFailure(
                        message: "change \(change) reached \(count) of \(watchers) watchers",
                        exitCode: ExitStatus.incomplete
                    )
                }
                if seen == change { count += 1 }
            }
            times.append(Double((ContinuousClock.now - start).nanoseconds) / 1e6)
        }
        let serverCPU = serverStart.flatMap { start in
            serverPID.flatMap(CPUUsage.seconds(ofProcess:)).map { $0 - start }
        }
        return PresenceFanoutReport(
            watchers: watchers,
            changes: changes,
            milliseconds: times,
            serverMicrosecondsPerEvent: serverCPU.map { $0 * 1e6 / Double(watchers * changes) }
        )
    }

    /// Adds `users` to the contacts of `client`, 32 requests in flight.
    private static func addContacts(_ users: [UserID], to client: ParleyClient) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            for _ in 0..<min(32, users.count) {
                let user = users[next]
                group.addTask { _ = try await client.addContact(user) }
                next += 1
            }
            for try await _ in group where next < users.count {
                let user = users[next]
                group.addTask { _ = try await client.addContact(user) }
                next += 1
            }
        }
    }

    /// `{"contacts":..,"rounds":..,"p50Ms":..,"maxMs":..,"milliseconds":[..]}`
    struct PresenceLogonReport: Encodable {
        var contacts: Int
        var rounds: Int
        var milliseconds: [Double]
        var p50Ms: Double { Self.median(milliseconds) }
        var maxMs: Double { milliseconds.max() ?? 0 }

        enum CodingKeys: String, CodingKey { case contacts, rounds, milliseconds, p50Ms, maxMs }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(contacts, forKey: .contacts)
            try container.encode(rounds, forKey: .rounds)
            try container.encode(milliseconds, forKey: .milliseconds)
            try container.encode(p50Ms, forKey: .p50Ms)
            try container.encode(maxMs, forKey: .maxMs)
        }

        var summary: String {
            String(
                format:
                    "logon with %d online contacts, %d rounds: every presence known after %.1f ms (median), %.1f ms (max)",
                contacts, rounds, p50Ms, maxMs)
        }

        static func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        }
    }

    /// `{"watchers":..,"changes":..,"p50Ms":..,"maxMs":..,"serverMicrosecondsPerEvent":..}`
    struct PresenceFanoutReport: Encodable {
        var watchers: Int
        var changes: Int
        var milliseconds: [Double]
        var serverMicrosecondsPerEvent: Double?

        enum CodingKeys: String, CodingKey {
            case watchers, changes, milliseconds, p50Ms, maxMs, serverMicrosecondsPerEvent
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(watchers, forKey: .watchers)
            try container.encode(changes, forKey: .changes)
            try container.encode(milliseconds, forKey: .milliseconds)
            try container.encode(PresenceLogonReport.median(milliseconds), forKey: .p50Ms)
            try container.encode(milliseconds.max() ?? 0, forKey: .maxMs)
            try container.encodeIfPresent(serverMicrosecondsPerEvent, forKey: .serverMicrosecondsPerEvent)
        }

        var summary: String {
            var text = String(
                format:
                    "%d watchers, %d presence changes: the last watcher had each after %.1f ms (median), %.1f ms (max)",
                watchers, changes, PresenceLogonReport.median(milliseconds), milliseconds.max() ?? 0)
            if let serverMicrosecondsPerEvent {
                text += String(format: "\nserver CPU %.2f µs per PRESENCE event pushed", serverMicrosecondsPerEvent)
            }
            return text
        }
    }
}
