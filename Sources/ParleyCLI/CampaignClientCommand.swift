import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore

/// `parley campaign-client` (hidden): the load of `scripts/kill-campaign.sh`, which kills the
/// server with SIGKILL again and again while this runs.
///
/// Senders send one message at a time, round robin to every recipient, each body numbered per
/// sender and recipient; a send that fails is tried again with the same message ID until the
/// server acknowledges it, and every acknowledged send is written to the sender's log at once.
/// Recipients write every message their application takes to their own log. Some recipients
/// stay logged on, some log on and off at random, some log on only at the end. At the end of
/// standard input the senders stop, every recipient logs on, and the command waits until each
/// acknowledged send has arrived (or `--drain-timeout` passes), then prints one JSON summary.
struct CampaignClientCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "campaign-client",
        abstract: "The load of scripts/kill-campaign.sh (internal).",
        shouldDisplay: false
    )
    static let defaultLogLevel = Logger.Level.error

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions

    @Option(help: "Senders.")
    var senders = 4

    @Option(help: "Recipients logged on all the time.")
    var online = 2

    @Option(help: "Recipients that log on and off at random.")
    var intermittent = 2

    @Option(help: "Recipients that log on only when the senders have stopped.")
    var late = 1

    @Option(name: .customLong("first-user"), help: "The first user ID of the participants.")
    var firstUser: UInt32 = 50_000

    @Option(name: .customLong("logs"), help: "The directory for the participants' logs.")
    var logDirectory: String

    @Option(name: .customLong("drain-timeout"), help: "Seconds to wait at the end for every acknowledged send.")
    var drainTimeout: Double = 120

    func validate() throws {
        guard senders >= 1 else { throw ValidationError("--senders must be at least 1") }
        guard online >= 0, intermittent >= 0, late >= 0, online + intermittent + late >= 1 else {
            throw ValidationError("give at least one recipient")
        }
        guard drainTimeout > 0 else { throw ValidationError("--drain-timeout must be positive") }
    }

    private static let password = "campaign-password"

    func run() async throws {
        let base = try connection.clientConfiguration()
        let logger = Logger(label: "parley.campaign")
        let ledger = CampaignLedger()
        let recipientCount = online + intermittent + late
        let users = (0..<(senders + recipientCount)).map { UserID(rawValue: firstUser + UInt32($0)) }
        let clients = users.map { _ in ParleyClient(configuration: base, logger: logger) }
        let senderIndices = 0..<senders
        let recipientIndices = senders..<users.count
        let recipients = recipientIndices.map { users[$0] }
        let roles = recipientIndices.map { index -> RecipientRole in
            let position = index - senders
            if position < online { return .online }
            return position < online + intermittent ? .intermittent : .late
        }

        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { try await client.run() } }
            for index in recipientIndices {
                let log = try CampaignLog(path: "\(logDirectory)/received-\(users[index]).log")
                let (client, user) = (clients[index], users[index])
                group.addTask { try await Self.receive(on: client, as: user, log: log, ledger: ledger) }
            }
            do {
                for (client, user) in zip(clients, users) {
                    let info = try await client.register(
                        UserInfo(userName: "campaign-\(user)"), password: Self.password, requestedUserID: user)
                    guard info.userID == user else {
                        throw CommandFailure(message: "registered as \(info.userID) instead of \(user)")
                    }
                }
                for (index, role) in zip(recipientIndices, roles) where role != .online {
                    try await clients[index].logOff()
                }
                let counts = try await Self.campaign(
                    senders: senderIndices.map { (clients[$0], users[$0]) },
                    recipients: recipientIndices.map { (clients[$0], users[$0], roles[$0 - senders]) },
                    to: recipients,
                    logDirectory: logDirectory,
                    drainTimeout: drainTimeout,
                    ledger: ledger
                )
                let hidden = clients.reduce(0) { $0 + $1.hiddenRedeliveries }
                try Output(json: true).json(
                    CampaignSummary(
                        acknowledged: counts.acknowledged,
                        received: counts.received,
                        missing: counts.missing,
                        sendRetries: counts.sendRetries,
                        hiddenRedeliveries: hidden
                    )
                )
                for client in clients { await client.shutdownGracefully() }
                try await group.waitForAll()
            } catch {
                for client in clients { client.shutdown() }
                try? await group.waitForAll()
                throw error
            }
        }
    }

    /// Starts the senders and the intermittent recipients, says "ready", runs until standard
    /// input ends, then drains.
    private static func campaign(
        senders: [(ParleyClient, UserID)],
        recipients: [(ParleyClient, UserID, RecipientRole)],
        to recipientIDs: [UserID],
        logDirectory: String,
        drainTimeout: Double,
        ledger: CampaignLedger
    ) async throws -> (acknowledged: Int, received: Int, missing: Int, sendRetries: Int) {
        try await withThrowingTaskGroup(of: Void.self) { work in
            for (client, user) in senders {
                let log = try CampaignLog(path: "\(logDirectory)/acknowledged-\(user).log")
                work.addTask { try await send(from: client, as: user, to: recipientIDs, log: log, ledger: ledger) }
            }
            for (client, user, role) in recipients where role == .intermittent {
                work.addTask { try await logOnAndOff(client, as: user, ledger: ledger) }
            }
            try Output(json: false).line("ready")
            let input = StandardInputLines()
            while await input.next() != nil {}
            ledger.stop()
            try await work.waitForAll()
        }
        // Everyone on for the drain.
        for (client, user, role) in recipients where role != .online {
            try await logOnWhileServerRestarts(client, as: user)
        }
        _ = try await withDeadline(.after(seconds: drainTimeout)) {
            await ledger.waitUntilDrained()
            return true
        }
        return ledger.summary
    }

    /// Sends until the ledger stops, one message at a time, each until it is acknowledged.
    private static func send(
        from client: ParleyClient,
        as sender: UserID,
        to recipients: [UserID],
        log: CampaignLog,
        ledger: CampaignLedger
    ) async throws {
        var numbers: [UserID: Int] = [:]
        var turn = 0
        while !ledger.isStopping {
            let recipient = recipients[turn % recipients.count]
            turn += 1
            let number = numbers[recipient, default: 0] + 1
            numbers[recipient] = number
            let id = MessageID.random()
            let result = try await sendUntilAnswered(
                client, .text("\(sender) \(recipient) \(number)"), to: recipient, id: id, ledger: ledger)
            guard result.isAccepted else {
                throw CommandFailure(message: "the server refused message \(id) to \(recipient): \(result.status)")
            }
            // Written before the next send starts: whatever the log holds was acknowledged.
            try log.write("\(sender) \(recipient) \(number) \(id.rawValue) \(result.duplicate ? 1 : 0)")
            ledger.acknowledged(CampaignLedger.Key(sender: sender, recipient: recipient, id: id))
        }
    }

    /// Sends with the same message ID until the server answers (the client itself resends
    /// after a reconnect within its request timeout; this covers a longer outage).
    private static func sendUntilAnswered(
        _ client: ParleyClient,
        _ body: MessageBody,
        to recipient: UserID,
        id: MessageID,
        ledger: CampaignLedger
    ) async throws -> DeliveryResult {
        while true {
            do {
                let results = try await client.send(body, to: [recipient], id: id)
                guard let result = results.first else {
                    throw CommandFailure(message: "the server answered message \(id) without a result")
                }
                return result
            } catch let error as ParleyError where error.code != .cancelled {
                ledger.sendRetried()
                // A request that failed at once (the server was killed mid-request) would
                // otherwise be tried again in a tight loop until the client has reconnected.
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// An intermittent recipient: on for a while, off for a while, until the ledger stops.
    private static func logOnAndOff(_ client: ParleyClient, as user: UserID, ledger: CampaignLedger) async throws {
        while !ledger.isStopping {
            try await logOnWhileServerRestarts(client, as: user)
            try await Task.sleep(for: .milliseconds(Int.random(in: 300...3000)))
            do {
                try await client.logOff()
            } catch {
                // The server was killed meanwhile: the client logs on again by itself after the
                // reconnect, and the next round's log-on finds it logged on.
                continue
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 300...3000)))
        }
    }

    /// Logs on, trying again while the server is down or restarting.
    private static func logOnWhileServerRestarts(_ client: ParleyClient, as user: UserID) async throws {
        while true {
            let failure: ParleyError
            do {
                _ = try await client.logOn(userID: user, password: password)
                return
            } catch {
                failure = error
            }
            if failure.code == .alreadyLoggedOn { return }
            if failure.code == .cancelled || failure.code == .invalidCredentials { throw failure }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// A recipient's application: logs every message it takes.
    private static func receive(
        on client: ParleyClient,
        as user: UserID,
        log: CampaignLog,
        ledger: CampaignLedger
    ) async throws {
        for await event in client.events {
            guard case .message(let message) = event else { continue }
            let fields = String(decoding: message.body.bytes, as: UTF8.self).split(separator: " ")
            guard fields.count == 3, let number = Int(fields[2]) else {
                throw CommandFailure(message: "\(user) received message \(message.id) with an unexpected body")
            }
            try log.write("\(user) \(message.sender) \(number) \(message.id.rawValue)")
            ledger.received(CampaignLedger.Key(sender: message.sender, recipient: user, id: message.id))
        }
    }
}

/// How a campaign recipient is on line.
enum RecipientRole: Sendable {
    case online, intermittent, late
}

/// The last line of `parley campaign-client`.
struct CampaignSummary: Encodable {
    var acknowledged: Int
    var received: Int
    /// Acknowledged sends that had not arrived when the drain ended.
    var missing: Int
    var sendRetries: Int
    /// Messages that came again after their recipient's application had taken them
    /// (``/ParleyClient/ParleyClient/hiddenRedeliveries``), over all recipients.
    var hiddenRedeliveries: Int
}
