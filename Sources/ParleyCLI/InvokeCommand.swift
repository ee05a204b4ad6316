import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore

/// `parley command`: sends a custom command to the server application or to a user and prints
/// the reply (docs/PROTOCOL.md section 24).
struct InvokeCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "command",
        abstract: "Send a custom command to the server application or a user and print the reply.",
        discussion: """
            --to server sends it to the server application; --to ID to a user's client, which \
            answers with its handler for NAME (`parley receive --echo-command NAME` answers with \
            the payload it got). Prints the reply's payload as text (binary as "N bytes \
            base64:..."); with --json {"event":"commandReply",...}. --fire-and-forget prints \
            "delivered" or "stored" (--store: keep it for an offline user). Exits 4 when the \
            recipient has no handler, its handler failed (the application's code and text are \
            printed), it is offline, or no reply came within --timeout seconds.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions
    @OptionGroup var credentials: CredentialOptions

    @Option(help: "The recipient: a user ID, or \"server\" for the server application.", transform: Self.recipient)
    var to: UserID

    @Argument(help: "The command's name.")
    var name: String

    @Argument(help: "The command's payload, as text (default: empty).")
    var payload: String = ""

    @Option(help: "Seconds to wait for the reply (default 10, at most 300).")
    var timeout: Double = 10

    @Flag(help: "Do not wait for a reply.")
    var fireAndForget = false

    @Flag(help: "With --fire-and-forget: keep the command for an offline recipient until it logs on.")
    var store = false

    func validate() throws {
        if !(timeout > 0 && timeout <= 300) { throw ValidationError("--timeout must be more than 0 and at most 300") }
        if store && !fireAndForget { throw ValidationError("--store needs --fire-and-forget") }
        do throws(ParleyError) {
            try Command.validate(name: name)
        } catch {
            throw ValidationError(error.message)
        }
    }

    @Sendable
    static func recipient(_ text: String) throws -> UserID {
        text == "server" ? .server : try UserID.argument(text)
    }

    func run() async throws {
        let out = Output(json: output.json)
        let (credentials, name, to, fireAndForget, store) = (self.credentials, name, to, fireAndForget, store)
        let payload = Array(self.payload.utf8)
        let timeout = Duration.milliseconds(Int64(self.timeout * 1000))
        let reply = try await withParleyClient(
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client")
        ) { client -> CommandReplyRecord in
            _ = try await client.logOn(userID: credentials.user, password: credentials.password)
            if fireAndForget {
                let delivery = try await client.fireCommand(name, payload: payload, to: to, storeIfOffline: store)
                return CommandReplyRecord(name: name, to: to, delivery: delivery)
            }
            let reply = try await client.sendCommand(name, payload: payload, to: to, timeout: timeout)
            return CommandReplyRecord(name: name, to: to, reply: reply)
        }
        try out.emit(reply, text: reply.line)
    }
}

/// `{"event":"commandReply","name":...,"to":N,"text":...}` (or `base64`, or `delivery`).
struct CommandReplyRecord: Encodable {
    var event = "commandReply"
    var name: String
    var to: UInt32
    var text: String?
    var base64: String?
    var delivery: String?

    init(name: String, to: UserID, reply: [UInt8]) {
        self.name = name
        self.to = to.rawValue
        (text, base64) = CommandRecord.content(of: reply)
    }

    init(name: String, to: UserID, delivery: CommandDelivery) {
        self.name = name
        self.to = to.rawValue
        self.delivery = delivery == .stored ? "stored" : "delivered"
    }

    var line: String { delivery ?? MessageRecord.content(text: text, base64: base64) }
}

/// A received command as `receive` prints it:
/// `{"event":"command","name":...,"sender":N,"expectsReply":true,"text":...}`.
struct CommandRecord: Encodable {
    var event = "command"
    var name: String
    var sender: UInt32
    var expectsReply: Bool
    var text: String?
    var base64: String?

    init(_ command: Command) {
        name = command.name
        sender = command.sender.rawValue
        expectsReply = command.expectsReply
        (text, base64) = Self.content(of: command.payload)
    }

    /// "command NAME from 1001: payload".
    var line: String {
        "command \(name) from \(sender): \(MessageRecord.content(text: text, base64: base64))"
    }

    /// A payload as text when it is UTF-8, else as base64.
    static func content(of payload: [UInt8]) -> (text: String?, base64: String?) {
        if let text = String(validating: payload, as: UTF8.self) { return (text, nil) }
        return (nil, Data(payload).base64EncodedString())
    }
}
