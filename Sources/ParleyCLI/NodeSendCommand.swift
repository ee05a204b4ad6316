import ArgumentParser
import Logging
import ParleyCore
import ParleyNode

/// `parley node-send`: starts a node, gives discovery a moment, sends one message by the best
/// route, prints the route, and stops.
struct NodeSendCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "node-send",
        abstract: "Send one message as a node: directly on the LAN, through the server, or queued.",
        discussion: """
            Starts the node in --data, waits until the recipient's node is linked on the LAN or \
            --wait seconds have passed, sends, and prints "sent ID to user N via ROUTE" (with --json \
            {"event":"sent","messageID":...,"route":"direct|server|queued","toUser":N}). A queued \
            message stays in the node's outbox and goes out the next time a node runs with the \
            same --data and can reach the recipient. Messages that arrive meanwhile are printed \
            as `parley node` prints them.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var options: NodeOptions

    @Option(name: .customLong("to"), help: "The recipient's user ID.", transform: UserID.argument)
    var recipient: UserID

    @Option(help: "At most this many seconds to wait for the recipient's node on the LAN.")
    var wait: Double = 3

    @Argument(help: "The text to send.")
    var text: String

    func validate() throws {
        guard wait >= 0 else { throw ValidationError("--wait must not be negative") }
    }

    func run() async throws {
        let out = Output(json: output.json)
        let (node, discovery) = try options.makeNode(logger: Logger(label: "parley.node"))
        let (recipient, body) = (self.recipient, MessageBody.text(text))
        let deadline = ContinuousClock.now + .seconds(wait)
        let outcome = try await withThrowingTaskGroup(
            of: Void.self,
            returning: Result<ParleyNode.SendResult, ParleyError>.self
        ) { group in
            group.addTask { try await discovery.run() }
            group.addTask { try await node.run() }
            group.addTask {
                // Whatever arrives for this node's user is printed, not dropped.
                for await event in node.events {
                    guard case .messageReceived = event else { continue }
                    let record = NodeEventRecord(event)
                    try out.emit(record, text: record.line)
                }
            }
            _ = try await node.listeningPort
            await Self.waitForLink(to: recipient, node: node, until: deadline)
            let outcome: Result<ParleyNode.SendResult, ParleyError>
            do throws(ParleyError) {
                outcome = .success(try await node.send(body, to: .user(recipient), id: .random()))
            } catch {
                outcome = .failure(error)
            }
            await node.shutdown()
            discovery.shutDown()
            group.cancelAll()
            try await group.waitForAll()
            return outcome
        }
        let record = NodeEventRecord.sent(try outcome.get(), to: .user(recipient))
        try out.emit(record, text: record.line)
    }

    /// Returns once a peer of `user` is linked, or at `deadline`.
    private static func waitForLink(
        to user: UserID,
        node: ParleyNode,
        until deadline: ContinuousClock.Instant
    ) async {
        while ContinuousClock.now < deadline {
            if node.peers().contains(where: { $0.userID == user && $0.linked }) { return }
            do {
                try await Task.sleep(for: .milliseconds(50))
            } catch {
                return  // cancelled: the command is on its way out
            }
        }
    }
}
