import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyNode

/// `parley send`: sends one message and prints every recipient's result: as a client of the
/// server, or (with `--data`) as a LAN node that picks the best route.
struct SendCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a message; prints one result per recipient (\"1001 accepted-online\").",
        discussion: """
            Through the server (--server, --user, --password): exits 0 once every recipient's \
            result is in and all were accepted, 5 if any recipient failed (all results are still \
            printed). With --receipt, then waits up to --timeout seconds for the delivery receipts \
            of the accepted recipients and prints them ("receipt 1001 <time>"); exits 6 if some did \
            not arrive. Messages that arrive for the sender while it waits are printed too, as \
            receive prints them: taking them acknowledges them.

            As a node (--data DIR, with or without --server): starts the node kept in DIR, waits \
            until each recipient's node is linked on the LAN or --wait seconds have passed, sends \
            by the best route and prints it per recipient: "sent ID to user N via direct|server|queued" \
            (JSON: {"event":"sent","messageID":...,"route":...,"toUser":N}). A queued message stays \
            in DIR's outbox and leaves the next time a node runs with the same --data and can \
            reach the recipient (`parley node --data DIR`). Exits 0 when every message is direct, \
            stored by the server or queued; a recipient the server refuses prints an error and \
            exits 5.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions

    @Option(
        name: .customLong("server"),
        help:
            "The server's address: HOST:PORT (\"[::1]:7420\" for IPv6; environment: PARLEY_SERVER). Required without --data."
    )
    var serverOption: String?

    var server: String? { EnvironmentCredentials.server(serverOption) }

    @Option(help: "Connection attempts and time limits (default: local; lan with --data).")
    var retry: RetryPreset?

    @OptionGroup var transport: TransportOptions

    @OptionGroup var credentials: OptionalCredentialOptions

    @Option(
        name: .customLong("to"),
        help: "A recipient's user ID (repeatable; \"1001,1002\" works too).",
        transform: SendCommand.recipients
    )
    var recipientLists: [[UserID]]

    @Option(name: .customLong("binary-file"), help: "Send this file's bytes as a binary message.")
    var binaryFile: String?

    @Argument(help: "The text to send (or use --binary-file).")
    var text: String?

    @Flag(help: "Through the server: ask for delivery receipts and wait for them.")
    var receipt = false

    @Option(help: "With --receipt: how many seconds to wait for the receipts.")
    var timeout: Double = 10

    @Option(
        name: .customLong("data"),
        help: "Send as the LAN node kept in this directory (key, peer cache, outbox): direct, server or queued."
    )
    var dataDirectory: String?

    @Option(help: "With --data: the node's name on the LAN (default: the data directory's name).")
    var name: String?

    @Option(help: "With --data: at most this many seconds to wait for the recipients' nodes on the LAN.")
    var wait: Double = 3

    @Flag(name: .customLong("no-direct"), help: "With --data: no direct links, the server (or the outbox) only.")
    var noDirect = false

    var recipients: [UserID] { recipientLists.flatMap { $0 } }

    func validate() throws {
        guard (text == nil) != (binaryFile == nil) else {
            throw ValidationError("give either the text to send or --binary-file, not both")
        }
        guard !recipients.isEmpty else { throw ValidationError("give at least one --to") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if let server {
            do {
                _ = try ParleyClient.Configuration(server: server)
            } catch {
                throw ValidationError(error.message)
            }
        }
        if dataDirectory == nil {
            guard server != nil else {
                throw ValidationError("give --server HOST:PORT, or --data DIR to send as a LAN node")
            }
            guard credentials.user != nil else { throw ValidationError("sending through the server needs --user") }
            for (option, given) in [("--name", name != nil), ("--no-direct", noDirect)] where given {
                throw ValidationError("\(option) goes with --data")
            }
        } else {
            guard !receipt else { throw ValidationError("--receipt works through the server only (without --data)") }
            guard wait >= 0 else { throw ValidationError("--wait must not be negative") }
            if let name, name.isEmpty { throw ValidationError("--name must not be empty") }
        }
    }

    func run() async throws {
        if let dataDirectory {
            try await sendAsNode(dataDirectory: dataDirectory)
        } else {
            try await sendThroughServer()
        }
    }

    private func sendThroughServer() async throws {
        let out = Output(json: output.json)
        let body = try messageBody()
        let id = MessageID.random()
        guard let server, let user = credentials.user, let password = credentials.password else {
            throw ValidationError("sending through the server needs --server, --user and --password")
        }
        let recipients = self.recipients
        let (receipt, timeout) = (self.receipt, self.timeout)
        var configuration = try ParleyClient.Configuration(server: server, retry: (retry ?? .local).policy)
        configuration.security = try transport.security(defaultKnownServers: nil)
        let outcome = try await withParleyClient(
            configuration: configuration,
            logger: Logger(label: "parley.client")
        ) { client in
            try await client.logOn(userID: user, password: password)
            let results = try await client.send(body, to: recipients, id: id, wantReceipt: receipt)
            for result in results {
                let record = DeliveryRecord(result, messageID: id)
                try out.emit(record, text: record.line)
            }
            let failed = results.contains { !$0.isAccepted }
            guard receipt else { return (failed: failed, missingReceipts: Set<UserID>()) }
            let expected = Set(results.filter(\.isAccepted).map(\.recipient)).subtracting([.server])
            let missing = try await withDeadline(.after(seconds: timeout)) {
                try await Self.awaitReceipts(for: id, from: expected, events: client.events, out: out)
            }
            return (failed: failed, missingReceipts: missing)
        }
        if !outcome.missingReceipts.isEmpty {
            let users = outcome.missingReceipts.sorted().map(\.description).joined(separator: ", ")
            Output.note("no delivery receipt within \(timeout) s from: \(users)")
        }
        if outcome.failed { throw ExitStatus.recipientFailed }
        if !outcome.missingReceipts.isEmpty { throw ExitStatus.incomplete }
    }

    /// Prints receipts for `id` until every user in `expected` sent one; returns who did not
    /// (when cancelled at the deadline).
    private static func awaitReceipts(
        for id: MessageID,
        from expected: Set<UserID>,
        events: ParleyClientEvents,
        out: Output
    ) async throws -> Set<UserID> {
        var missing = expected
        guard !missing.isEmpty else { return missing }
        for await event in events {
            switch event {
            case .deliveryReceipt(let receipt) where receipt.messageID == id:
                guard missing.remove(receipt.recipient) != nil else { continue }
                let record = ReceiptRecord(receipt)
                try out.emit(record, text: record.line)
                if missing.isEmpty { return missing }
            case .message(let message):
                // Taken from the events, so acknowledged: print it rather than lose it.
                let record = MessageRecord(message)
                try out.emit(record, text: record.line)
            case .sessionReplaced(let reason):
                throw ParleyError(code: .sessionReplaced, message: reason)
            default:
                continue
            }
        }
        return missing
    }

    func messageBody() throws -> MessageBody {
        if let text { return .text(text) }
        guard let binaryFile else { throw ValidationError("nothing to send") }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: binaryFile))
            return .binary(Array(data))
        } catch {
            throw CommandFailure(message: "cannot read \(binaryFile): \(error.localizedDescription)")
        }
    }

    @Sendable
    static func recipients(_ text: String) throws -> [UserID] {
        try text.split(separator: ",").map { try UserID.argument(String($0).trimmingCharacters(in: .whitespaces)) }
    }
}
