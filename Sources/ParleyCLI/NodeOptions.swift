import ArgumentParser
import Logging
import ParleyAvahi
import ParleyClient
import ParleyCore
import ParleyNode

/// What `node` needs to start a node: its data, its name, the optional server account, and the
/// link settings.
struct NodeOptions: ParsableArguments {
    @Option(
        name: .customLong("data"),
        help: "The node's directory: its key, peer cache and outbox (created if missing)."
    )
    var dataDirectory: String

    @Option(help: "The node's name, shown to peers on the LAN.")
    var name: String

    @Option(help: "The server's address, HOST:PORT (optional: without it the node works peer to peer only).")
    var server: String?

    @Option(help: "Connection attempts and time limits for the server connection.")
    var retry: RetryPreset = .lan

    @OptionGroup var transport: TransportOptions

    @OptionGroup var credentials: OptionalCredentialOptions

    @Option(
        name: .customLong("listen-host"),
        help: "The address on which the node accepts direct links (default: every interface, IPv6 and IPv4)."
    )
    var listenHost: String?

    @Option(name: .customLong("listen-port"), help: "The port for direct links; 0 lets the system choose.")
    var listenPort = 0

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

    func validate() throws {
        if let outboxExpiry, outboxExpiry <= 0 { throw ValidationError("--outbox-expiry must be positive") }
        guard !name.isEmpty else { throw ValidationError("--name must not be empty") }
        guard (0...65535).contains(listenPort) else { throw ValidationError("--listen-port must be 0...65535") }
        if let heartbeat, heartbeat <= 0 { throw ValidationError("--heartbeat must be positive") }
        if let peerTimeout, peerTimeout <= 0 { throw ValidationError("--peer-timeout must be positive") }
        if let server {
            do {
                _ = try ParleyClient.Configuration(server: server)
            } catch {
                throw ValidationError(error.message)
            }
        }
    }

    /// The node these options describe.
    var setup: NodeSetup {
        var setup = NodeSetup(dataDirectory: dataDirectory, name: name)
        setup.server = server
        setup.retry = retry
        setup.transport = transport
        if let user = credentials.user, let password = credentials.password {
            setup.credentials = ParleyNode.Credentials(userID: user, password: password)
        }
        setup.listenHost = listenHost
        setup.listenPort = listenPort
        setup.allowsDirectLinks = !noDirect
        setup.heartbeat = heartbeat
        setup.peerTimeout = peerTimeout
        setup.outboxExpiry = outboxExpiry
        return setup
    }
}

/// Everything a command needs to start a node (`parley node`, `parley send --data`).
struct NodeSetup {
    var dataDirectory: String
    var name: String
    var server: String?
    var retry = RetryPreset.lan
    /// TLS to the server; trust on first use remembers servers in the data directory by default.
    var transport: TransportOptions?
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
                configuration: .init(ownNodeID: nodeID.description),
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
            let knownServers = dataDirectory + "/known-servers"
            client.security =
                try transport?.security(defaultKnownServers: knownServers)
                ?? .tls(.trustOnFirstUse(knownServersFile: knownServers))
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
