import ArgumentParser
import Logging
import ServiceLifecycle

/// `parley node`: a long-running node that finds its peers on the LAN, links to them directly,
/// uses the server when it has one, and prints what happens.
struct NodeCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a node: LAN discovery, direct links to peers, the server when there is one.",
        discussion: """
            Prints one line per event (with --json one object per line, its kind in "event"): \
            "started" (nodeID, name, port, pid) first; "peerUp", "peerChanged" (nodeID, userID, \
            name, addresses, status, linked, online) and "peerDown" (nodeID); "message" (id, \
            sender, recipients, kind, text or base64, sentAt, deliveredAt, fromNode, route: direct, \
            server or queued; redelivered: true for a message handed over again after a crash, which \
            may repeat an earlier line with the same id: each message is printed before the node \
            confirms it, so none is lost); "receipt" (messageID, toUser, deliveredAt: a message sent through the \
            server reached its recipient); "linkRefused" (nodeID, message, byPeer: a direct link refused \
            by this node, e.g. an impostor, or by the peer); "routeChanged" (toUser or toNode, route); \
            "queuedMessageFailed" \
            (messageID, toUser or toNode, message: a queued message refused for good); \
            "queuedMessageExpired" (messageID, toUser or toNode: it waited longer than \
            --outbox-expiry); "server" (state: \
            connecting, connected, loggedOn with userID, logOnFailed or disconnected with reason, \
            logOnDeferred with reason and retryAfterMs: a refusal that may pass, such as the session \
            of a crashed run still open, tried again; stopped); "presence" (userID, state, text, \
            source: server, or lan while the server is unreachable: a contact's presence changed); \
            and "stopped" last.

            Unless --no-stdin-commands is given, it reads commands from standard input, one per \
            line, and answers each with one line: "send USER_ID TEXT" and "send-node NODE_ID TEXT" \
            answer {"event":"sent","messageID":...,"route":"direct|server|queued"}; "whois USER_ID" \
            answers {"event":"whois","cached":...,"user":{...}}; "find PREFIX" (of the user name) or "find \
            FIELD MATCH VALUE" answers {"event":"found","cached":...,"truncated":...,"users":[...]} \
            (cached: the server was away and the node's cache answered); "peers" answers \
            {"event":"peers","peers":[...]}; "status TEXT" (online, away, busy or a short text: the \
            presence peers see) answers {"event":"status","status":...}, and "status" alone shows \
            it; "presence online|away|busy [TEXT]" sets the user's presence on the server and the \
            LAN and answers like "status"; "contact-add USER_ID" answers {"event":"contact",...}; \
            "contacts" answers {"event":"contacts","cached":...,"contacts":[{userID, name, state, \
            text, source},...]}; a failed command answers \
            {"event":"error","command":...,"message":...}. "quit" stops the node. The end of \
            standard input does not stop it (so a script may close its end of the pipe); SIGTERM \
            and SIGINT stop it gracefully. Queued messages stay in the node's outbox (in --data) \
            and are sent when the recipient is reachable, also after a restart.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var options: NodeOptions

    @Flag(
        name: .customLong("stdin-commands"),
        inversion: .prefixedNo,
        help: "Read commands from standard input (send, send-node, whois, peers, quit)."
    )
    var readsCommands = true

    func run() async throws {
        let setup = try await options.setup()
        let (node, discovery) = try setup.makeNode(logger: Logger(label: "parley.node"))
        let console = NodeConsole(
            node: node, name: setup.name, out: Output(json: output.json), readsCommands: readsCommands)
        // Shut down in reverse order: the node (withdrawing its advertisement while discovery still
        // runs), the console (once it printed the node's last events), discovery. A node that
        // stops by itself (`quit`) ends the group the same way.
        let services = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: discovery),
                    .init(service: console, successTerminationBehavior: .gracefullyShutdownGroup),
                    .init(service: node, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Logger(label: "parley.lifecycle")
            )
        )
        try await services.run()
    }
}
