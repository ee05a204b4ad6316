import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore

/// `parley receive`: logs on and prints messages as they arrive, stored ones first.
struct ReceiveCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "receive",
        abstract: "Log on and print messages as they arrive (messages stored while offline come first).",
        discussion: """
            Line format: "<sender> -> <recipients> [<message id>] <text>", or "<n> bytes base64:<...>" \
            for binary messages. A message is acknowledged when it is printed. Ends after --count \
            messages, after --timeout seconds, or when the server shuts down; exits 0, or 6 when \
            --count was given and fewer messages arrived. With --json the first line is \
            {"event":"loggedOn",...}, then {"event":"message",...} per message and \
            {"event":"serverShutdown",...} if the server goes away. Custom commands sent to the user \
            are printed too ("command NAME from SENDER: PAYLOAD", {"event":"command",...}); \
            --echo-command NAME answers commands named NAME with their own payload, others get \
            NO_HANDLER. With --files DIR, files sent to the user (docs/PROTOCOL.md section 26) are \
            saved in DIR as they are offered, unless --accept-files (all, none, or from:ID,ID...) \
            declines them: progress on a terminal, then "file from SENDER saved as PATH" \
            ({"event":"file",...}); --count counts saved files like messages. A download cut short \
            continues from its partial file the next time. Without --files, offers wait on the \
            server.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions
    @OptionGroup var credentials: CredentialOptions

    @Option(help: "Exit after this many messages.")
    var count: Int?

    @Option(help: "Exit after this many seconds.")
    var timeout: Double?

    @Option(help: "Answer custom commands of this name with their own payload (repeatable).")
    var echoCommand: [String] = []

    @Option(help: "Save files sent to you in this folder.")
    var files: String?

    @Option(help: "With --files: which files to accept: all, none, or from:ID,ID,... (the others are declined).")
    var acceptFiles = FileAcceptance(argument: "all")!

    // Receiving as a node (ReceiveCommand+Node.swift): files come directly from senders' nodes too.
    @Option(
        name: .customLong("data"),
        help: "Receive as the node kept in this directory: files (with --files) come directly from senders' nodes too."
    )
    var dataDirectory: String?

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let timeout, timeout <= 0 { throw ValidationError("--timeout must be positive") }
        if let files {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: files, isDirectory: &isFolder), isFolder.boolValue else {
                throw ValidationError("--files: \(files) is not a folder")
            }
        }
        for name in echoCommand {
            do throws(ParleyError) {
                try Command.validate(name: name)
            } catch {
                throw ValidationError("--echo-command: \(error.message)")
            }
        }
    }

    func run() async throws {
        if let dataDirectory {
            try await receiveAsNode(dataDirectory: dataDirectory)
            return
        }
        let out = Output(json: output.json)
        let (credentials, count, echo) = (self.credentials, self.count, echoCommand)
        let reception = files.map { (folder: $0, policy: acceptFiles) }
        let deadline = ContinuousClock.Instant.after(seconds: timeout)
        let received = try await withParleyClient(
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client")
        ) { client in
            for name in echo {
                try client.handleCommands(named: name) { $0.payload }
            }
            let logon = try await client.logOn(userID: credentials.user, password: credentials.password)
            try out.emitJSON(
                LoggedOnRecord(userID: credentials.user.rawValue, storedMessages: logon.storedMessages)
            )
            return try await withDeadline(deadline) {
                try await Self.printMessages(from: client, count: count, files: reception, out: out)
            }
        }
        if let count, received < count { throw ExitStatus.incomplete }
    }

    /// Prints messages until `count` were printed, the server shuts down, or the task is
    /// cancelled; returns how many were printed.
    private static func printMessages(
        from client: ParleyClient, count: Int?, files: (folder: String, policy: FileAcceptance)?, out: Output
    ) async throws -> Int {
        var received = 0
        for await event in client.events {
            switch event {
            case .message(let message):
                let record = MessageRecord(message)
                try out.emit(record, text: record.line)
                received += 1
                if let count, received >= count { return received }
            case .serverShuttingDown(let reason):
                try out.emitJSON(ShutdownRecord(reason: reason))
                Output.note("the server is shutting down: \(reason)")
                return received
            case .sessionReplaced(let reason):
                throw ParleyError(code: .sessionReplaced, message: reason)
            case .connectionStateChanged(.disconnected(let error?)) where error.code == .kicked:
                // An admin closed the session; the client does not come back by itself.
                throw error
            case .command(let command):
                let record = CommandRecord(command)
                try out.emit(record, text: record.line)
            case .transferOffered(let offer):
                guard let files else {
                    try out.emit(
                        TransferRecord(
                            event: "offered", id: offer.id.rawValue, name: offer.name, peer: offer.sender.rawValue),
                        text: "file \(offer.name) (\(offer.size) bytes) from \(offer.sender) waits on the server")
                    continue
                }
                if try await handle(offer, client: client, folder: files.folder, policy: files.policy, out: out) {
                    received += 1
                    if let count, received >= count { return received }
                }
            case .transferStatus(let status):
                try out.emit(
                    TransferRecord(status),
                    text: "transfer \(status.id) to \(status.recipient): \(status.outcome.rawValue) \(status.reason)")
            case .deliveryReceipt, .connectionStateChanged, .presence:
                continue
            }
        }
        return received
    }
}

/// `{"event":"loggedOn","storedMessages":N,"userID":N}`
struct LoggedOnRecord: Encodable {
    var event = "loggedOn"
    var userID: UInt32
    var storedMessages: Int
}

/// `{"event":"serverShutdown","reason":...}`
struct ShutdownRecord: Encodable {
    var event = "serverShutdown"
    var reason: String
}
