import ArgumentParser
import Logging
import ParleyCore
import ParleyLink
import ParleyNode

/// `parley unpin`: forgets the key a node pinned for a user or a node (trust on first use), so
/// the next key presented for it is accepted and pinned anew.
struct UnpinCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "unpin",
        abstract: "Forget the key pinned for a user or a node, after a legitimate key change.",
        discussion: """
            The subject is "user ID", "node NODE_ID", or just the user ID or node ID, as the error \\
            that refused the key names it. Prints "unpinned user ID" (with --json \\
            {"event":"unpinned","subject":"user ID"}); exits 1 when nothing was pinned for it. \\
            Works while the node runs (it dials peers it refused again once its backoff expires).
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions

    @Option(name: .customLong("data"), help: "The node's directory.")
    var dataDirectory: String

    @Argument(help: "user ID, node NODE_ID, or a bare user ID or node ID.")
    var subject: [String]

    func validate() throws {
        _ = try recipient()
    }

    private func recipient() throws -> ParleyNode.Recipient {
        let words = subject.count == 2 ? subject : ["", subject.first ?? ""]
        guard subject.count == 1 || subject.count == 2, ["", "user", "node"].contains(words[0]) else {
            throw ValidationError("give \"user ID\" or \"node NODE_ID\"")
        }
        if words[0] != "node", let user = UserID(words[1]) { return .user(user) }
        if words[0] != "user", let node = NodeID(words[1]) { return .node(node) }
        throw ValidationError("\"\(subject.joined(separator: " "))\" is neither a user ID nor a node ID")
    }

    func run() async throws {
        let out = Output(json: output.json)
        let recipient = try recipient()
        let shown =
            switch recipient {
            case .user(let user): "user \(user)"
            case .node(let node): "node \(node)"
            }
        guard try ParleyNode.unpin(recipient, dataDirectory: dataDirectory) else {
            throw CommandFailure(message: "no key is pinned for \(shown) in \(dataDirectory)")
        }
        try out.emit(UnpinnedRecord(subject: shown), text: "unpinned \(shown)")
    }
}

/// `{"event":"unpinned","subject":"user 1001"}`
struct UnpinnedRecord: Encodable {
    var event = "unpinned"
    var subject: String
}
