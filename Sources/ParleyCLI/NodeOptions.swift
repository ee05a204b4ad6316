import ArgumentParser
import Configuration
import Logging
import ParleyAvahi
import ParleyClient
import ParleyCore
import ParleyNode

/// What `node` needs to start a node: its data, its name, the optional server account, and the
/// link settings.
struct NodeOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "A JSON configuration file (docs/CONFIGURATION.md lists the node's keys).",
            discussion: "Environment: PARLEY_CONFIG. Flags win over PARLEY_* variables, which win over the file."
        )
    )
    var configFile: String?

    @Option(
        name: .customLong("data"),
        help: "The node's directory: its key, peer cache and outbox (created if missing)."
    )
    var dataDirectory: String?

    @Option(help: "The node's name, shown to peers on the LAN.")
    var name: String?

    @Option(help: "The server's address, HOST:PORT (optional: without it the node works peer to peer only).")
    var server: String?

    @Option(help: "Connection attempts and time limits for the server connection (default lan).")
    var retry: RetryPreset?

    @OptionGroup var transport: TransportOptions

    @OptionGroup var credentials: OptionalCredentialOptions

    @Option(
        name: .customLong("listen-host"),
        help: "The address on which the node accepts direct links (default: every interface, IPv6 and IPv4)."
    )
    var listenHost: String?

    @Option(name: .customLong("listen-port"), help: "The port for direct links; 0 lets the system choose (default).")
    var listenPort: Int?

    @Flag(name: .customLong("no-direct"), help: "Neither accept nor open direct links: use the server only.")
    var noDirect = false

    @Option(help: "Seconds between heartbeats on direct links (default 2).")
    var heartbeat: Double?

    @Option(name: .customLong("peer-timeout"), help: "Seconds of silence before a peer counts as down (default 6).")
    var peerTimeout: Double?

    @Option(
        name: .customLong("outbox-expiry"),
        help: "Seconds a message may wait in the outbox before it is dropped undelivered (default 7 days)."
    )
    var outboxExpiry: Double?

    /// The settings given as flags, by configuration key: they win over every other source.
    private var flagValues: [String: ConfigValue] {
        var values: [String: ConfigValue] = [:]
        func set(_ key: String, _ content: ConfigContent?, secret: Bool = false) {
            if let content { values[key] = ConfigValue(content, isSecret: secret) }
        }
        set("data", dataDirectory.map { .string($0) })
        set("name", name.map { .string($0) })
        set("server", server.map { .string($0) })
        set("retry", retry.map { .string($0.rawValue) })
        set("user", credentials.userOption.map { .string("\($0)") })
        set("password", credentials.secret.passwordOption.map { .string($0) }, secret: true)
        set("passwordFile", credentials.secret.passwordFile.map { .string($0) })
        set("listenHost", listenHost.map { .string($0) })
        set("listenPort", listenPort.map { .int($0) })
        set("direct", noDirect ? .bool(false) : nil)
        set("heartbeat", heartbeat.map { .double($0) })
        set("peerTimeout", peerTimeout.map { .double($0) })
        set("outboxExpiry", outboxExpiry.map { .double($0) })
        set("serverFingerprint", transport.serverFingerprint.map { .string($0) })
        set("caFile", transport.caFile.map { .string($0) })
        set("knownServers", transport.knownServers.map { .string($0) })
        set("insecurePlaintext", transport.insecurePlaintext ? .bool(true) : nil)
        return values
    }

    /// The node these options (with the environment and the configuration file) describe.
    func setup() async throws -> NodeSetup {
        try await NodeSettings.load(flags: flagValues, file: configFile)
    }
}

/// Everything a command needs to start a node (`parley node`, `parley send --data`).
struct NodeSetup {
    var dataDirectory: String
    var name: String
    var server: String?
    var retry = RetryPreset.lan
    /// TLS to the server; nil: trust on first use, remembered in the data directory.
    var security: ConnectionSecurity?
    var credentials: ParleyNode.Credentials?
    var listenHost: String?
    var listenPort = 0
    var allowsDirectLinks = true
    /// Seconds; nil keeps the node's default.
    var heartbeat: Double?
    /// Seconds; nil keeps the node's default.
    var peerTimeout: Double?
    /// Seconds; nil keeps the node's default.
    var outboxExpiry: Double?

    /// The node and the Avahi discovery it uses; discovery's `run()` is the caller's to run.
    ///
    /// The node's identity is loaded first, because discovery must know the node's own ID to
    /// filter out its own advertisement.
    func makeNode(logger: Logger) throws -> (node: ParleyNode, discovery: AvahiDiscovery) {
        let nodeID: ParleyNode.NodeID
        do {
            nodeID = try ParleyNode.nodeID(dataDirectory: dataDirectory)
        } catch {
            throw CommandFailure(message: "in \(dataDirectory): \(ErrorText.chain(error))")
        }
        let discovery: AvahiDiscovery
        do {
            discovery = try AvahiDiscovery(
                configuration: .init(ownNodeID: nodeID),
                logger: Logger(label: "parley.discovery")
            )
        } catch {
            throw CommandFailure(message: "cannot set up LAN discovery: \(ErrorText.describe(error))")
        }
        let nodeConfiguration = try configuration()
        let node: ParleyNode
        do {
            node = try ParleyNode(configuration: nodeConfiguration, discovery: discovery, logger: logger)
        } catch {
            throw CommandFailure(message: ErrorText.describe(error))
        }
        return (node, discovery)
    }

    private func configuration() throws -> ParleyNode.Configuration {
        var configuration = ParleyNode.Configuration(dataDirectory: dataDirectory, name: name)
        if let server {
            var client = try ParleyClient.Configuration(server: server, retry: retry.policy)
            client.security = security ?? .tls(.trustOnFirstUse(knownServersFile: dataDirectory + "/known-servers"))
            configuration.server = client
        }
        configuration.credentials = credentials
        configuration.listenHost = listenHost
        configuration.listenPort = listenPort
        configuration.allowsDirectLinks = allowsDirectLinks
        if let heartbeat { configuration.heartbeatInterval = .seconds(heartbeat) }
        if let peerTimeout { configuration.peerTimeout = .seconds(peerTimeout) }
        if let outboxExpiry { configuration.outboxExpiry = .seconds(outboxExpiry) }
        return configuration
    }
}
