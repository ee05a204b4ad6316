import Foundation
import Synchronization
import Testing

/// Exactly once to the application across kill -9 of the receiving node: a sender streams
/// messages at a steady rate while the receiving `parley node` is killed (SIGKILL) and restarted
/// on the same data directory again and again. Every message the sender was told is sent
/// ("sent": direct, server or queued) must appear exactly once in the receivers' own record,
/// their printed lines, over all the runs; none lost, none twice.
///
/// A lab of its own (prefix `parleykill`, subnet 10.236.0.0/24): the suite runs for minutes (about
/// 19 with the defaults on 2 busy cores: 4.5 peer to peer, 14 through the server), next
/// to the other node tests. `PARLEY_KILL_COUNT` (default 50) and `PARLEY_KILL_RATE` (messages per
/// second, default 400) change the load.
@Suite(
    "LAN lab: kill -9 of a receiving node under load",
    .serialized,
    .enabled(if: Lab.isRoot, "LAN lab tests need root (network namespaces, bind mounts); skipped"),
    .timeLimit(.minutes(30))
)
struct NodeLabKillTests {
    static let environment = ["PARLEYLAB_PREFIX": "parleykill", "PARLEYLAB_SUBNET": "10.236.0"]
    /// 12 kills per test in the suite (about 4 minutes for both on the reference machine);
    /// `PARLEY_KILL_COUNT=50` for the full proof reported in README.
    static let kills = ProcessInfo.processInfo.environment["PARLEY_KILL_COUNT"].flatMap { Int($0) } ?? 12
    static let rate = ProcessInfo.processInfo.environment["PARLEY_KILL_RATE"].flatMap { Double($0) } ?? 400

    static func address(_ host: String) -> String { "10.236.0.\(host.dropFirst())" }

    @Test func killingTheReceiverNeitherLosesNorDuplicatesDirectMessages() async throws {
        try await NodeLab.with(hosts: 2, environment: Self.environment) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha")
            let beta = try await lab.node("h2", data: data, name: "beta")
            try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }
            let report = try await Self.stream(
                from: alpha, command: "send-node \(beta.nodeID)", to: beta, kills: Self.kills
            ) {
                try await lab.node("h2", data: data, name: "beta")
            }
            print("figures: kill -9 of the receiver, peer to peer: \(report)")
            #expect(report.lost.isEmpty, "lost: \(report.lost.prefix(20))")
            #expect(report.duplicated.isEmpty, "duplicated: \(report.duplicated.prefix(20))")
            #expect(report.routes["direct", default: 0] > 0, "\(report)")
        }
    }

    @Test func killingTheReceiverNeitherLosesNorDuplicatesMessagesThroughTheServer() async throws {
        try await NodeLab.with(hosts: 3, environment: Self.environment) { lab, data in
            let server = try await lab.server("h1", data: data)
            let address = "\(Self.address("h1")):\(server.port)"
            let alphaUser = try await lab.register("h1", name: "alpha", password: "pw-alpha", server: address)
            let betaUser = try await lab.register("h1", name: "beta", password: "pw-beta", server: address)
            let alpha = try await lab.node(
                "h2", data: data, name: "alpha",
                ["--server", address, "--user", "\(alphaUser)", "--password", "pw-alpha"])
            // beta takes no direct links: everything comes through the server
            let betaArguments = ["--server", address, "--user", "\(betaUser)", "--password", "pw-beta", "--no-direct"]
            let beta = try await lab.node("h3", data: data, name: "beta", betaArguments)
            for node in [alpha, beta] {
                try await node.waitFor("logon", timeout: .seconds(10)) {
                    $0.event == "server" && $0.state == "loggedOn"
                }
            }
            let report = try await Self.stream(from: alpha, command: "send \(betaUser)", to: beta, kills: Self.kills) {
                try await lab.node("h3", data: data, name: "beta", betaArguments)
            }
            print("figures: kill -9 of the receiver, through the server: \(report)")
            #expect(report.lost.isEmpty, "lost: \(report.lost.prefix(20))")
            #expect(report.duplicated.isEmpty, "duplicated: \(report.duplicated.prefix(20))")
            #expect(report.routes["server", default: 0] > 0, "\(report)")
        }
    }

    struct Report: CustomStringConvertible {
        var kills = 0
        var sent = 0
        var received = 0
        var lost: [UInt64] = []
        var duplicated: [UInt64] = []
        /// Messages printed again after a crash, marked "redelivered" (the window between the
        /// printed line and the confirmation).
        var repeatedRedeliveries = 0
        var routes: [String: Int] = [:]
        var refused = 0
        var took: Duration = .zero

        var description: String {
            let rate = Double(sent) / max(Double(took.components.seconds), 1)
            return
                "\(kills) kills, \(sent) messages sent in \(seconds(took)) (\(Int(rate))/s; routes \(routes.sorted { $0.key < $1.key }); "
                + "\(refused) sends refused), \(received) received lines, \(lost.count) lost, \(duplicated.count) duplicated, "
                + "\(repeatedRedeliveries) printed again marked redelivered"
        }
    }

    /// Streams "COMMAND m<N>" lines to `sender` at ``rate`` per second while `receiver` is killed
    /// `kills` times (each time after a different number of new messages) and started again by
    /// `restart`; then stops the stream, waits for the last message, and compares what the
    /// sender was told was sent with what every run of the receiver printed.
    static func stream(
        from sender: LabNode,
        command: String,
        to receiver: LabNode,
        kills: Int,
        restart: () async throws -> LabNode
    ) async throws -> Report {
        var runs = [receiver]
        let pump = CommandPump(process: sender.process, command: command, rate: rate)
        let started = ContinuousClock.now
        pump.start()
        var report = Report()
        do {
            for round in 0..<kills {
                // a different number of new messages each time, so the kills land in different states
                let target = pump.written + 10 + (round * 37) % 150
                try await runs[runs.count - 1].waitFor("message m\(target)", timeout: .seconds(60)) {
                    $0.event == "message" && ($0.text.flatMap { Int($0.dropFirst()) } ?? -1) >= target
                }
                // then a moment later, anywhere in the handling of the next messages
                try await Task.sleep(for: .microseconds(Int.random(in: 0..<10_000)))
                let victim = runs[runs.count - 1]
                #expect(kill(victim.pid, SIGKILL) == 0)
                _ = try await victim.process.waitForExit(timeout: .seconds(10))
                await victim.process.waitForOutputEnd()
                runs.append(try await restart())
                report.kills += 1
            }
        } catch {
            await pump.stop()
            throw error
        }
        await pump.stop()
        report.took = ContinuousClock.now - started
        // Commands are answered in order: the answer to this one comes after every send's.
        let mark = sender.process.lines.count
        try sender.process.send("peers")
        try await sender.waitFor("the answer to peers", from: mark, timeout: .seconds(120)) { $0.event == "peers" }
        let lines = sender.process.lines.compactMap { NodeLine($0) }
        let sent = lines.filter { $0.event == "sent" }
        report.sent = sent.count
        report.refused = lines.filter { $0.event == "error" }.count
        for line in sent { report.routes[line.route ?? "?", default: 0] += 1 }
        let last = try #require(sent.last?.messageID, "nothing was sent")
        // Messages from one sender to one recipient stay in order: the last one comes last.
        try await runs[runs.count - 1].waitFor("the last message", timeout: .seconds(120)) {
            $0.event == "message" && $0.id == last
        }
        // Per message: how often it was printed, and how often not marked as handed over again.
        var counts: [UInt64: (all: Int, fresh: Int)] = [:]
        for run in runs {
            for line in run.process.lines.compactMap({ NodeLine($0) }) where line.event == "message" {
                guard let id = line.id else { continue }
                counts[id, default: (0, 0)].all += 1
                if line.redelivered != true { counts[id, default: (0, 0)].fresh += 1 }
            }
        }
        report.received = counts.values.map(\.all).reduce(0, +)
        report.lost = sent.compactMap(\.messageID).filter { counts[$0] == nil }
        // A repeat not marked as a redelivery is a duplicate the application could not tell.
        report.duplicated = counts.filter { $0.value.fresh > 1 }.map(\.key).sorted()
        report.repeatedRedeliveries = counts.filter { $0.value.all > 1 && $0.value.fresh <= 1 }.count
        return report
    }
}

/// Writes "COMMAND m<N>" lines (N = 0, 1, …) to a process's standard input at a steady rate,
/// on a thread of its own (a full pipe blocks the writer, not the test's tasks).
final class CommandPump: Sendable {
    private let process: LabProcess
    private let command: String
    private let interval: Duration
    private let state = Mutex(State())

    private struct State {
        var written = 0
        var stopped = false
        var exited = false
        var exitWaiter: CheckedContinuation<Void, Never>?
    }

    init(process: LabProcess, command: String, rate: Double) {
        self.process = process
        self.command = command
        interval = .nanoseconds(Int64(1e9 / max(rate, 1)))
    }

    /// How many lines were written so far.
    var written: Int { state.withLock { $0.written } }

    func start() {
        Thread.detachNewThread { [self] in
            pump()
            let waiter = state.withLock { state in
                state.exited = true
                defer { state.exitWaiter = nil }
                return state.exitWaiter
            }
            waiter?.resume()
        }
    }

    private func pump() {
        let clock = ContinuousClock()
        var next = clock.now
        while let number = state.withLock({ $0.stopped ? nil : $0.written }) {
            do {
                try process.send("\(command) m\(number)")
            } catch {
                return
            }
            state.withLock { $0.written += 1 }
            next += interval
            let (seconds, attoseconds) = clock.now.duration(to: next).components
            // pacing the load (not waiting for an event): sleep until the next slot
            if seconds >= 0, attoseconds > 0 {
                Thread.sleep(forTimeInterval: Double(seconds) + Double(attoseconds) / 1e18)
            }
        }
    }

    /// Stops the stream; returns once the last line is written.
    func stop() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let exited = state.withLock { state in
                state.stopped = true
                if !state.exited { state.exitWaiter = waiter }
                return state.exited
            }
            if exited { waiter.resume() }
        }
    }
}
