import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore

/// `parley send`: sends one message and prints every recipient's result.
struct SendCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send a message; prints one result per recipient (\"1001 accepted-online\").",
        discussion: """
            Exits 0 once every recipient's result is in and all were accepted, 5 if any recipient \
            failed (all results are still printed). With --receipt, then waits up to --timeout \
            seconds for the delivery receipts of the accepted recipients and prints them \
            ("receipt 1001 <time>"); exits 6 if some did not arrive. Messages that arrive for the \
            sender while it waits are printed too, as receive prints them: taking them acknowledges them.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions
    @OptionGroup var credentials: CredentialOptions

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

    @Flag(help: "Ask for delivery receipts and wait for them.")
    var receipt = false

    @Option(help: "With --receipt: how many seconds to wait for the receipts.")
    var timeout: Double = 10

    var recipients: [UserID] { recipientLists.flatMap { $0 } }

    func validate() throws {
        guard (text == nil) != (binaryFile == nil) else {
            throw ValidationError("give either the text to send or --binary-file, not both")
        }
        guard !recipients.isEmpty else { throw ValidationError("give at least one --to") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        let out = Output(json: output.json)
        let body = try messageBody()
        let id = MessageID.random()
        let (recipients, credentials) = (self.recipients, self.credentials)
        let (receipt, timeout) = (self.receipt, self.timeout)
        let outcome = try await withParleyClient(
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client")
        ) { client in
            try await client.logOn(userID: credentials.user, password: credentials.password)
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

    private func messageBody() throws -> MessageBody {
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
