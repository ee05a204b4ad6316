import ArgumentParser
import Foundation
import Logging
import NIOCore
import ParleyClient
import ParleyCore
import ParleyLink

/// `parley bench`: a load generator that measures delivered messages per second and
/// end-to-end latency, or logons per second.
struct BenchCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure a server: delivered messages/s and latency percentiles, or logons/s.",
        discussion: """
            Registers --clients fresh users and connects one logged-on client each. Client i sends \
            its share of --messages text messages of --size bytes to client (i+1) % N, with at most \
            --window sends in flight per client; each body carries its send time, so the receiver \
            measures end-to-end latency (with --lean and --rate, a pacer hands out the offered load \
            every millisecond, round robin, and the send time is when each client writes its share). \
            Throughput counts from the first send to the last delivery. \
            With --logons K, measures logons per second instead (K logons spread over the clients, at \
            the server's password cost, each followed by a log-off). With --reconnect-ready-file PATH, \
            measures a mass reconnect instead: once every client is logged on it writes PATH, then \
            waits until the server was restarted (by whoever waits for PATH: \
            scripts/bench-reconnect.sh) and every client logged on again by itself (with its \
            resumption token, docs/PROTOCOL.md section 9.2.1); with --lean as well, the clients \
            are raw connections on one thread (plaintext, or TLS without --insecure-plaintext) \
            that wait for every connection to close and the server to accept again, then all connect and log on with their tokens at once \
            (the storm; --server-pid-file for the server's CPU). With --presence-logon N, measures how \
            long a user whose N contacts are all online waits after LOGON until it knows every \
            contact's presence; with --presence-fanout M, how long a presence change of one user \
            takes to reach all M users watching it, and the server's CPU per event pushed (with \
            --server-pid). Stops after --timeout seconds at \
            the latest; exits 6 if not everything completed by then.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions

    @Option(help: "How many clients (and users).")
    var clients = 4

    @Option(help: "How many messages in all.")
    var messages = 1000

    @Option(help: "The size of each message body in bytes (at least \(BenchCommand.minimumSize)).")
    var size = 100

    @Option(help: "The offered load in messages per second over all clients; 0 sends as fast as possible.")
    var rate: Double = 0

    @Option(help: "Sends in flight per client at most.")
    var window = 64

    @Flag(
        help: """
            With --lean and --rate: receivers acknowledge at the next tick of the pacer (at most 1 ms \
            later), in the same write as their sends, instead of after every read (as ParleyClient \
            does): fewer system calls on both sides.
            """
    )
    var ackWithSends = false

    @Option(
        name: [.customLong("logons"), .customLong("password-cost-logons")],
        help: "Measure logons per second with this many logons instead of messages."
    )
    var logons: Int?

    @Option(
        name: .customLong("reconnect-ready-file"),
        help:
            "Measure a mass reconnect: write this file once all clients are logged on, then time their automatic logons after the server restarts."
    )
    var reconnectReadyFile: String?

    @Option(
        name: .customLong("presence-logon"),
        help: "Measure presence at logon instead: a user with this many contacts, all online, logs on --rounds times."
    )
    var presenceLogon: Int?

    @Option(
        name: .customLong("presence-fanout"),
        help:
            "Measure presence fan-out instead: this many watchers have one user in their contacts, who changes state --rounds times."
    )
    var presenceFanout: Int?

    @Flag(
        help: ArgumentHelp(
            "Measure messages with the lean generator: raw plaintext connections on one thread, frames coded by hand.",
            discussion:
                "Needs --insecure-plaintext. Costs a fraction of the ParleyClient-based generator's CPU, so the server limits the figures."
        )
    )
    var lean = false

    @Option(help: "Rounds of a presence measurement.")
    var rounds = 5

    @Option(help: "Stop after this many seconds at the latest.")
    var timeout: Double = 120

    @Option(
        name: .customLong("server-pid-file"),
        help:
            "With --lean --reconnect-ready-file: a file holding the restarted server's process ID, read when the storm starts, to report the server's CPU time during the storm."
    )
    var serverPIDFile: String?

    @Option(
        name: .customLong("server-pid"),
        help: "The server's process ID (same machine): also report the server's CPU time per delivered message."
    )
    var serverPID: Int32?

    static let minimumSize = 24

    func validate() throws {
        guard clients >= 1 else { throw ValidationError("--clients must be at least 1") }
        guard messages >= 1 else { throw ValidationError("--messages must be at least 1") }
        guard size >= Self.minimumSize else { throw ValidationError("--size must be at least \(Self.minimumSize)") }
        guard rate >= 0 else { throw ValidationError("--rate must not be negative") }
        guard window >= 1 else { throw ValidationError("--window must be at least 1") }
        if let logons, logons < 1 { throw ValidationError("--logons must be at least 1") }
        if let presenceLogon, presenceLogon < 1 { throw ValidationError("--presence-logon must be at least 1") }
        if let presenceFanout, presenceFanout < 1 { throw ValidationError("--presence-fanout must be at least 1") }
        if presenceLogon != nil, presenceFanout != nil {
            throw ValidationError("--presence-logon and --presence-fanout are two measurements: pick one")
        }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if lean {
            guard logons == nil, presenceLogon == nil, presenceFanout == nil else {
                throw ValidationError("--lean measures messages or a mass reconnect only")
            }
        }
        if serverPIDFile != nil, !lean || reconnectReadyFile == nil {
            throw ValidationError("--server-pid-file goes with --lean --reconnect-ready-file")
        }
    }

    func run() async throws {
        let out = Output(json: output.json)
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        let participants = BenchParticipants(
            count: clients,
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client"),
            deadline: deadline
        )
        if lean, let reconnectReadyFile {
            let configuration = try connection.clientConfiguration()
            // The storm over TLS: one TLS context for every connection, each checking the server's
            // certificate as ParleyClient would.
            var tls: (@Sendable (ChannelPipeline.SynchronousOperations) throws -> Void)?
            if case .tls(let trust) = configuration.security {
                tls = try ServerTrustVerifier(trust: trust, host: configuration.host, port: configuration.port)
                    .handlerMaker()
            }
            let report = try await LeanReconnect.run(
                LeanReconnect.Plan(
                    host: configuration.host,
                    port: configuration.port,
                    clients: clients,
                    readyFile: reconnectReadyFile,
                    serverPIDFile: serverPIDFile,
                    deadline: deadline,
                    tls: tls
                )
            )
            try out.emit(report, text: report.summary)
            if report.loggedOn < report.clients { throw ExitStatus.incomplete }
            return
        }
        if let reconnectReadyFile {
            let report = try await participants.withLoggedOnClients { participants in
                try await Self.measureReconnect(participants, readyFile: reconnectReadyFile, deadline: deadline)
            }
            try out.emit(report, text: report.summary)
            if report.loggedOnAgain < report.clients { throw ExitStatus.incomplete }
            return
        }
        if let contacts = presenceLogon ?? presenceFanout {
            let presence = BenchParticipants(
                count: contacts + 1,
                configuration: participants.configuration,
                logger: participants.logger,
                deadline: deadline
            )
            let (rounds, serverPID) = (self.rounds, self.serverPID)
            if presenceLogon != nil {
                let report = try await presence.withLoggedOnClients { participants in
                    try await Self.measurePresenceLogon(
                        contacts: contacts, rounds: rounds, participants: participants, deadline: deadline)
                }
                try out.emit(report, text: report.summary)
            } else {
                let report = try await presence.withLoggedOnClients { participants in
                    try await Self.measurePresenceFanout(
                        watchers: contacts,
                        changes: rounds,
                        participants: participants,
                        serverPID: serverPID,
                        deadline: deadline
                    )
                }
                try out.emit(report, text: report.summary)
            }
            return
        }
        if let logons {
            let report = try await participants.withLoggedOnClients { participants in
                try await Self.measureLogons(logons, participants: participants, deadline: deadline)
            }
            try out.emit(report, text: report.summary)
            if report.logons < logons { throw ExitStatus.incomplete }
            return
        }
        if lean {
            let configuration = try Self.leanConfiguration(connection)
            let report = try await LeanLoad.run(
                LeanLoad.Plan(
                    host: configuration.host,
                    port: configuration.port,
                    clients: clients,
                    messages: messages,
                    size: size,
                    window: window,
                    rate: rate > 0 ? rate : nil,
                    acksWithSends: ackWithSends,
                    deadline: deadline,
                    serverPID: serverPID
                )
            )
            try out.emit(report, text: report.summary)
            if let failure = report.firstFailure { Output.note("a send failed: \(failure)") }
            if report.delivered < report.messages || report.outOfOrder ?? 0 > 0 { throw ExitStatus.incomplete }
            return
        }
        let plan = MessagePlan(
            messages: messages,
            size: size,
            senders: clients,
            window: window,
            interval: rate > 0 ? .nanoseconds(Int64(Double(clients) * 1e9 / rate)) : nil
        )
        let serverPID = self.serverPID
        let report = try await participants.withLoggedOnClients { participants in
            let cpu = CPUWindow(serverPID: serverPID)
            var report = try await Self.measureMessages(plan, participants: participants, deadline: deadline)
            cpu.finish(into: &report)
            return report
        }
        try out.emit(report, text: report.summary)
        if let failure = report.firstFailure { Output.note("a send failed: \(failure)") }
        if report.delivered < report.messages { throw ExitStatus.incomplete }
    }

    /// The server's address for the lean message load, which speaks plaintext only.
    private static func leanConfiguration(_ options: ServerOptions) throws -> ParleyClient.Configuration {
        let configuration = try options.clientConfiguration()
        guard configuration.security == .insecurePlaintext else {
            throw ValidationError(
                "--lean messages are plaintext only: add --insecure-plaintext (and run the server so)")
        }
        return configuration
    }

    // MARK: Messages

    /// What every sender does.
    struct MessagePlan: Sendable {
        var messages: Int
        var size: Int
        var senders: Int
        var window: Int
        /// The pause between two sends of one client, for a paced run.
        var interval: Duration?

        /// How many messages sender `index` sends; the remainder goes to the first ones.
        func share(of index: Int) -> Int {
            messages / senders + (index < messages % senders ? 1 : 0)
        }
    }

    private static func measureMessages(
        _ plan: MessagePlan,
        participants: [BenchParticipant],
        deadline: ContinuousClock.Instant
    ) async throws -> MessageReport {
        let start = ContinuousClock.now
        let count = participants.count
        var sent = SenderTally()
        var received = ReceiverTally()
        var latency = LatencySummary()
        try await withThrowingTaskGroup(of: BenchPart.self) { group in
            for index in 0..<count {
                let sender = participants[index]
                let receiver = participants[(index + 1) % count]
                let share = plan.share(of: index)
                group.addTask {
                    let tally = try await withDeadline(deadline) {
                        await receiveMessages(share, on: receiver.client, since: start)
                    }
                    return .received(tally)
                }
                group.addTask {
                    // At the deadline, sends still in flight are cancelled (and count as failed).
                    let tally = try await withDeadline(deadline) {
                        await sendMessages(
                            share,
                            from: sender.client,
                            to: receiver.user,
                            plan: plan,
                            since: start,
                            deadline: deadline
                        )
                    }
                    return .sent(tally)
                }
            }
            for try await part in group {
                switch part {
                case .sent(let tally): sent.merge(tally)
                case .received(let tally):
                    received.merge(tally)
                    latency.merge(tally.latency)
                }
            }
        }
        let end = received.lastDelivery ?? ContinuousClock.now
        let seconds = Double((end - start).nanoseconds) / 1e9
        return MessageReport(
            clients: count,
            messages: plan.messages,
            size: plan.size,
            delivered: received.delivered,
            failed: sent.failed,
            seconds: seconds,
            deliveredPerSecond: seconds > 0 ? Double(received.delivered) / seconds : 0,
            p50Ms: latency.percentile(0.5),
            p99Ms: latency.percentile(0.99),
            p999Ms: latency.percentile(0.999),
            firstFailure: sent.firstFailure
        )
    }

    private enum BenchPart: Sendable {
        case sent(SenderTally)
        case received(ReceiverTally)
    }

    /// Sends `count` messages with at most `plan.window` in flight, paced when the plan says so.
    private static func sendMessages(
        _ count: Int,
        from client: ParleyClient,
        to peer: UserID,
        plan: MessagePlan,
        since start: ContinuousClock.Instant,
        deadline: ContinuousClock.Instant
    ) async -> SenderTally {
        var tally = SenderTally()
        await withTaskGroup(of: SenderTally.self) { group in
            var inFlight = 0
            for sequence in 0..<count {
                if let interval = plan.interval {
                    let due = start + interval * sequence
                    guard due < deadline else { break }
                    do {
                        try await Task.sleep(until: due, clock: .continuous)
                    } catch {
                        break  // cancelled
                    }
                }
                guard ContinuousClock.now < deadline, !Task.isCancelled else { break }
                if inFlight >= plan.window, let done = await group.next() {
                    tally.merge(done)
                    inFlight -= 1
                }
                group.addTask {
                    let sentAt = (ContinuousClock.now - start).nanoseconds
                    let body = Self.payload(sentAt: sentAt, size: plan.size)
                    var result = SenderTally()
                    do {
                        let results = try await client.send(.text(body), to: [peer])
                        if !results.allSatisfy(\.isAccepted) {
                            result.failed = 1
                            result.firstFailure = results.first { !$0.isAccepted }.map { "\($0.status)" }
                        }
                    } catch {
                        result.failed = 1
                        result.firstFailure = "\(error)"
                    }
                    return result
                }
                inFlight += 1
            }
            for await done in group { tally.merge(done) }
        }
        return tally
    }

    /// Takes messages from `client` until `count` arrived (or the task is cancelled) and
    /// records each one's latency from the send time its body carries.
    private static func receiveMessages(
        _ count: Int,
        on client: ParleyClient,
        since start: ContinuousClock.Instant
    ) async -> ReceiverTally {
        var tally = ReceiverTally()
        guard count > 0 else { return tally }
        for await event in client.events {
            guard case .message(let message) = event else { continue }
            let now = ContinuousClock.now
            guard case .text(let text) = message.body, let sentAt = Int64(text.prefix { $0 != " " }) else { continue }
            tally.latency.record(nanoseconds: (now - start).nanoseconds - sentAt)
            tally.delivered += 1
            tally.lastDelivery = now
            if tally.delivered >= count { break }
        }
        return tally
    }

    /// The send time in nanoseconds since the run's start, then padding to `size` bytes.
    static func payload(sentAt: Int64, size: Int) -> String {
        let stamp = "\(sentAt) "
        return stamp + String(repeating: "x", count: max(size - stamp.utf8.count, 0))
    }

    private struct SenderTally: Sendable {
        var failed = 0
        var firstFailure: String?

        mutating func merge(_ other: SenderTally) {
            failed += other.failed
            firstFailure = firstFailure ?? other.firstFailure
        }
    }

    private struct ReceiverTally: Sendable {
        var delivered = 0
        var latency = LatencySummary()
        var lastDelivery: ContinuousClock.Instant?

        /// Counts and times; the latencies are merged apart, into one histogram.
        mutating func merge(_ other: ReceiverTally) {
            delivered += other.delivered
            if let last = other.lastDelivery, lastDelivery.map({ last > $0 }) ?? true { lastDelivery = last }
        }
    }

    /// `{"clients":..,"deliveredPerSecond":..,"messages":..,"p50Ms":..,"p999Ms":..,"p99Ms":..,"seconds":..,"size":..}`
    struct MessageReport: Encodable {
        var clients: Int
        var messages: Int
        var size: Int
        var delivered: Int
        var failed: Int
        var seconds: Double
        var deliveredPerSecond: Double
        var p50Ms: Double?
        var p99Ms: Double?
        var p999Ms: Double?
        var firstFailure: String?
        /// CPU time this generator used while measuring, and the share of one core it took.
        var benchCPUSeconds: Double?
        var benchCores: Double?
        /// With --server-pid: the server's CPU time while measuring, per delivered message.
        var serverCPUSeconds: Double?
        var serverMicrosecondsPerMessage: Double?
        /// With --lean: messages that arrived twice or out of their sender's order (must be 0).
        var outOfOrder: Int?
        /// With --rate: the offered load.
        var offeredPerSecond: Double?
        /// With --lean and --server-pid: the server's peak resident memory (VmHWM) since it started.
        var serverPeakRSSMiB: Double?

        private enum CodingKeys: String, CodingKey {
            case clients, messages, size, delivered, failed, seconds, deliveredPerSecond, p50Ms, p99Ms, p999Ms,
                benchCPUSeconds, benchCores, serverCPUSeconds, serverMicrosecondsPerMessage, outOfOrder,
                offeredPerSecond, serverPeakRSSMiB
        }

        var summary: String {
            func ms(_ value: Double?) -> String { value.map { String(format: "%.2f ms", $0) } ?? "-" }
            return """
                \(clients) clients, \(delivered) of \(messages) messages of \(size) bytes delivered \
                (\(failed) sends failed) in \(String(format: "%.3f", seconds)) s
                \(String(format: "%.0f", deliveredPerSecond)) messages/s delivered
                latency p50 \(ms(p50Ms)), p99 \(ms(p99Ms)), p99.9 \(ms(p999Ms))
                """ + cpuSummary
        }

        private var cpuSummary: String {
            var text = ""
            if let outOfOrder { text += "\n\(outOfOrder) messages arrived twice or out of order" }
            if let serverPeakRSSMiB { text += String(format: "\nserver peak memory %.1f MiB", serverPeakRSSMiB) }
            if let benchCPUSeconds, let benchCores {
                text += String(format: "\nbench CPU %.2f s (%.2f cores)", benchCPUSeconds, benchCores)
            }
            if let serverCPUSeconds, let serverMicrosecondsPerMessage {
                text += String(
                    format: "\nserver CPU %.2f s, %.2f µs per delivered message", serverCPUSeconds,
                    serverMicrosecondsPerMessage)
            }
            return text
        }
    }

    // MARK: Logons

    private static func measureLogons(
        _ total: Int,
        participants: [BenchParticipant],
        deadline: ContinuousClock.Instant
    ) async throws -> LogonReport {
        // Registering logged every client on: start the measurement as guests.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for participant in participants { group.addTask { try await participant.client.logOff() } }
            try await group.waitForAll()
        }
        let start = ContinuousClock.now
        let count = participants.count
        let done = try await withThrowingTaskGroup(of: Int.self) { group in
            for (index, participant) in participants.enumerated() {
                let share = total / count + (index < total % count ? 1 : 0)
                group.addTask {
                    var done = 0
                    while done < share, ContinuousClock.now < deadline, !Task.isCancelled {
                        try await participant.client.logOn(userID: participant.user, password: participant.password)
                        try await participant.client.logOff()
                        done += 1
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let seconds = Double((ContinuousClock.now - start).nanoseconds) / 1e9
        return LogonReport(
            clients: count,
            logons: done,
            seconds: seconds,
            logonsPerSecond: seconds > 0 ? Double(done) / seconds : 0
        )
    }

    // MARK: Mass reconnect

    /// Writes `readyFile`, then waits for every client to lose its connection and log on again.
    private static func measureReconnect(
        _ participants: [BenchParticipant],
        readyFile: String,
        deadline: ContinuousClock.Instant
    ) async throws -> ReconnectReport {
        let start = ContinuousClock.now
        let outcomes = try await withThrowingTaskGroup(of: (Duration, Duration)?.self) { group in
            for participant in participants {
                group.addTask {
                    // The events before the restart (the registration's logon) are still
                    // buffered: skip them up to the disconnect.
                    var disconnectedAt: ContinuousClock.Instant?
                    for await event in participant.client.events {
                        guard case .connectionStateChanged(let change) = event else { continue }
                        switch change {
                        case .disconnected where disconnectedAt == nil:
                            disconnectedAt = .now
                        case .loggedOn where disconnectedAt != nil:
                            return (disconnectedAt.map { $0 - start } ?? .zero, ContinuousClock.now - start)
                        case .stopped:
                            return nil
                        default:
                            continue
                        }
                    }
                    return nil
                }
            }
            group.addTask {
                try Data("\(participants.count) clients logged on\n".utf8).write(to: URL(fileURLWithPath: readyFile))
                do {
                    try await Task.sleep(until: deadline)
                } catch {
                    return nil  // Every client logged on again before the deadline.
                }
                // Stop the clients still waiting: their event streams end.
                for participant in participants { participant.client.shutdown() }
                return nil
            }
            var outcomes: [(Duration, Duration)] = []
            for try await outcome in group {
                guard let outcome else { continue }
                outcomes.append(outcome)
                if outcomes.count == participants.count { group.cancelAll() }
            }
            return outcomes
        }
        func seconds(_ duration: Duration) -> Double { Double(duration.nanoseconds) / 1e9 }
        let firstDisconnect = outcomes.map(\.0).min() ?? .zero
        let firstLogon = outcomes.map(\.1).min() ?? .zero
        let lastLogon = outcomes.map(\.1).max() ?? .zero
        return ReconnectReport(
            clients: participants.count,
            loggedOnAgain: outcomes.count,
            secondsFromFirstDisconnect: seconds(lastLogon - firstDisconnect),
            secondsFromFirstLogon: seconds(lastLogon - firstLogon)
        )
    }

    /// `{"clients":..,"loggedOnAgain":..,"secondsFromFirstDisconnect":..,"secondsFromFirstLogon":..}`
    struct ReconnectReport: Encodable {
        var clients: Int
        var loggedOnAgain: Int
        /// From the first client's disconnect (the server stopping) to the last client's logon.
        var secondsFromFirstDisconnect: Double
        /// From the first logon after the restart (the server is back) to the last.
        var secondsFromFirstLogon: Double

        var summary: String {
            """
            \(loggedOnAgain) of \(clients) clients logged on again
            \(String(format: "%.3f", secondsFromFirstDisconnect)) s from the first disconnect to the last logon
            \(String(format: "%.3f", secondsFromFirstLogon)) s from the first logon after the restart to the last
            """
        }
    }

    /// `{"clients":..,"logons":..,"logonsPerSecond":..,"seconds":..}`
    struct LogonReport: Encodable {
        var clients: Int
        var logons: Int
        var seconds: Double
        var logonsPerSecond: Double

        var summary: String {
            """
            \(clients) clients, \(logons) logons in \(String(format: "%.3f", seconds)) s
            \(String(format: "%.1f", logonsPerSecond)) logons/s
            """
        }
    }
}

/// CPU time of the generator and (optionally) the server over one measurement.
struct CPUWindow {
    let serverPID: Int32?
    private let ownStart = CPUUsage.ownSeconds()
    private let serverStart: Double?
    private let wallStart = ContinuousClock.now

    init(serverPID: Int32?) {
        self.serverPID = serverPID
        self.serverStart = serverPID.flatMap(CPUUsage.seconds(ofProcess:))
    }

    func finish(into report: inout BenchCommand.MessageReport) {
        let wall = Double((ContinuousClock.now - wallStart).nanoseconds) / 1e9
        let own = CPUUsage.ownSeconds() - ownStart
        report.benchCPUSeconds = own
        report.benchCores = wall > 0 ? own / wall : nil
        if let serverPID, let serverStart, let serverEnd = CPUUsage.seconds(ofProcess: serverPID) {
            report.serverCPUSeconds = serverEnd - serverStart
            report.serverMicrosecondsPerMessage =
                report.delivered > 0 ? (serverEnd - serverStart) * 1e6 / Double(report.delivered) : nil
        }
    }
}
