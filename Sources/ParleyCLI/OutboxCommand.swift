import ArgumentParser
import Foundation
import Logging
import ParleyCore
import ParleyNode

/// `parley outbox list|cancel`: the messages a node keeps in its outbox until a route to their
/// recipients exists (or they expire), whether the node runs or not.
struct OutboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox",
        abstract: "List or cancel the messages waiting in a node's outbox.",
        subcommands: [List.self, Cancel.self]
    )

    struct List: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the messages waiting in the outbox of the node kept in --data.",
            discussion: """
                One line per message and recipient still waiting, oldest first: "ID to user N (or \\
                node ID), queued TIME, expires TIME: TEXT" (with --json {"event":"queued",\\
                "messageID":...,"toUser" or "toNode":...,"createdAt":...,"expiresAt":...,"kind":...,\\
                "text" or "base64":...}). Prints "the outbox is empty" (nothing with --json) when \\
                nothing waits. Works while the node runs.
                """
        )
        static let defaultLogLevel = Logger.Level.warning

        @OptionGroup var output: OutputOptions

        @Option(name: .customLong("data"), help: "The node's directory.")
        var dataDirectory: String

        @Option(
            name: .customLong("outbox-expiry"),
            help: "The node's --outbox-expiry in seconds, to show when messages expire (default 7 days)."
        )
        var outboxExpiry: Double?

        func validate() throws {
            if let outboxExpiry, outboxExpiry <= 0 { throw ValidationError("--outbox-expiry must be positive") }
        }

        func run() async throws {
            let out = Output(json: output.json)
            let expiry = outboxExpiry.map { Duration.seconds($0) } ?? ParleyNode.Configuration.defaultOutboxExpiry
            let queued = try ParleyNode.queuedMessages(dataDirectory: dataDirectory, expiry: expiry)
            if queued.isEmpty && !out.isJSON { try out.line("the outbox is empty") }
            for message in queued {
                let record = QueuedRecord(message)
                try out.emit(record, text: record.line)
            }
        }
    }

    struct Cancel: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a message out of the outbox of the node kept in --data, for every recipient.",
            discussion: """
                Prints "cancelled ID" (with --json {"event":"cancelled","messageID":...}); exits 1 \\
                when no message with that ID waits. A message already on its way may still arrive.
                """
        )
        static let defaultLogLevel = Logger.Level.warning

        @OptionGroup var output: OutputOptions

        @Option(name: .customLong("data"), help: "The node's directory.")
        var dataDirectory: String

        @Argument(help: "The message ID, as `outbox list` or `send` printed it.")
        var messageID: UInt64

        func run() async throws {
            let out = Output(json: output.json)
            guard try ParleyNode.cancelQueued(MessageID(messageID), dataDirectory: dataDirectory) else {
                throw CommandFailure(message: "message \(messageID) is not in the outbox of \(dataDirectory)")
            }
            try out.emit(CancelledRecord(messageID: messageID), text: "cancelled \(messageID)")
        }
    }
}

/// `{"event":"cancelled","messageID":...}`
struct CancelledRecord: Encodable {
    var event = "cancelled"
    var messageID: UInt64
}

/// A message waiting in a node's outbox, as `outbox list` prints it.
struct QueuedRecord: Encodable {
    var event = "queued"
    var messageID: UInt64
    var toUser: UInt32?
    var toNode: String?
    var createdAt: Date
    var expiresAt: Date
    var kind: String
    var text: String?
    var base64: String?

    init(_ message: ParleyNode.QueuedMessage) {
        messageID = message.messageID.rawValue
        switch message.recipient {
        case .user(let user): toUser = user.rawValue
        case .node(let node): toNode = node.description
        }
        createdAt = message.createdAt
        expiresAt = message.expiresAt
        (kind, text, base64) = MessageRecord.fields(of: message.body)
    }

    /// "8812... to user 1001, queued 2026-12-02T20:00:00.000Z, expires 2026-12-09T20:00:00.000Z: hello"
    var line: String {
        let recipient = toUser.map { "user \($0)" } ?? "node \(toNode ?? "?")"
        return "\(messageID) to \(recipient), queued \(Timestamp.format(createdAt)), "
            + "expires \(Timestamp.format(expiresAt)): \(MessageRecord.content(text: text, base64: base64))"
    }
}
