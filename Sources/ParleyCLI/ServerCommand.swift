import ArgumentParser
import Configuration
import Foundation
import Logging
import Metrics
import NIOCore
import ParleyCore
import ParleyServer
import Prometheus
import ServiceLifecycle
import UnixSignals

/// `parley server`: runs a server in a service group until SIGTERM or SIGINT.
struct ServerCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run a Parley server until SIGTERM or SIGINT (graceful shutdown).",
        discussion: """
            Once the socket is bound, prints "tls fingerprint sha256:..." (the SHA-256 fingerprint \
            of the certificate clients see, for them to pin with --server-fingerprint) and \
            "listening on HOST:PORT" (with --json one line \
            {"event":"listening","host":...,"port":...,"tlsFingerprint":...}). Without \
            --tls-certificate, the server makes a self-signed certificate at first start and keeps \
            it in its data directory (server-key.pem, mode 0600, and server-cert.pem). A busy port \
            is an error ("address in use"); --port-search N tries the next N-1 ports too.
            """
    )
    static let defaultLogLevel = Logger.Level.info

    @OptionGroup var output: OutputOptions

    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "A JSON configuration file (docs/CONFIGURATION.md lists every key and its default).",
            discussion: "Environment: PARLEY_CONFIG. Flags win over PARLEY_* variables, which win over the file."
        )
    )
    var configFile: String?

    @Option(help: "The TCP port; 0 lets the system choose (default 7420).")
    var port: Int?

    @Option(
        name: .customLong("data"),
        help: "The directory for the server's database and TLS key (created if missing)."
    )
    var dataDirectory: String?

    @Option(help: "The address to listen on (default 0.0.0.0).")
    var host: String?

    @Option(
        name: .customLong("port-search"),
        help: "When the port is busy, try up to this many ports from --port up (default 1: that port only)."
    )
    var portSearch: Int?

    @Option(
        name: .customLong("tls-certificate"),
        help: "The server's certificate chain (PEM), e.g. from an internal CA; with --tls-key."
    )
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "The private key (PEM) of --tls-certificate.")
    var tlsKey: String?

    @Option(
        name: .customLong("metrics-address"),
        help: ArgumentHelp(
            "Serve /metrics (Prometheus), /status (JSON) and a status page at / on this HOST:PORT (off by default).",
            discussion: "Unauthenticated and read-only: use loopback (127.0.0.1:9420) or an admin network."
        )
    )
    var metricsAddress: String?

    @Option(
        name: .customLong("admin-socket"),
        help: ArgumentHelp(
            "The admin socket for `parley admin` (default admin.sock in --data; off for none).",
            discussion: "A Unix socket, mode 0600: only the server's user and root may use it (docs/ADMIN.md)."
        )
    )
    var adminSocket: String?

    @Flag(
        name: .customLong("insecure-plaintext"),
        help: "No TLS (debugging only): passwords cross the network in clear; clients need --insecure-plaintext too."
    )
    var insecurePlaintext = false

    @Option(name: .customLong("max-connections"), help: "Refuse connections beyond this many (default 16384).")
    var maximumConnections: Int?

    @Option(name: .customLong("max-frame-size"), help: "The largest frame accepted, in bytes (default 1 MiB).")
    var maximumFrameSize: Int?

    @Option(name: .customLong("minimum-user-id"), help: "Assigned user IDs start here (default 1000).")
    var minimumUserID: UInt32?

    @Flag(name: .customLong("replace-sessions"), help: "A second logon of a user replaces the older session.")
    var replacesSessions = false

    @Option(name: .customLong("password-cost"), help: "log2 of scrypt's N for new password hashes (default 14).")
    var passwordCost: Int?

    @Option(name: .customLong("event-loops"), help: "Event-loop threads for connections (default 1).")
    var eventLoops: Int?

    @Option(help: "Seconds without writing before the server sends a PING (default 30).")
    var heartbeat: Double?

    @Option(name: .customLong("idle-timeout"), help: "Seconds of silence before a connection is closed (default 90).")
    var idleTimeout: Double?

    @Option(help: "The server name sent to clients (default parley).")
    var name: String?

    @Option(
        name: .customLong("max-file-size"),
        help: "The largest file a user may send, in bytes; 0: no files (default 1 GiB).")
    var maximumFileSize: Int?

    @Option(
        name: .customLong("transfer-quota"), help: "The most bytes of files held for one recipient (default 2 GiB).")
    var transferQuota: Int?

    @Option(
        name: .customLong("transfer-retention"),
        help: "Seconds the server keeps a file its recipient has not fetched (default 604800, 7 days).")
    var transferRetention: Double?

    @Option(help: "Durability: normal survives a crash or kill -9, full also power loss (default normal).")
    var durability: DurabilityArgument?

    @Option(
        name: .customLong("message-storage"),
        help: "Where messages wait for their recipients: log (an append-only log, the default) or sqlite."
    )
    var messageStorage: MessageStorageArgument?

    @Option(
        name: .customLong("history-days"),
        help: "Keep message history for this many days, searchable with parley history (default: no history)."
    )
    var historyDays: Int?

    /// Applies a changed configuration to the running server, and says what needs a restart.
    private static func reload(
        _ server: ParleyServer,
        flags: [String: ConfigValue],
        file: String?,
        started: ServerSettings,
        logger: Logger
    ) async {
        let settings: ServerSettings
        do {
            settings = try await ServerSettings.load(flags: flags, file: file)
        } catch {
            logger.error("SIGHUP: the configuration is not valid; nothing changed", metadata: ["error": "\(error)"])
            return
        }
        RuntimeLogLevel.level = settings.level
        server.maximumConnections = settings.maxConnections
        var metadata: Logger.Metadata = [
            "logLevel": "\(settings.logLevel)", "maxConnections": "\(settings.maxConnections)",
        ]
        do {
            let fingerprint = try server.reloadTLSCertificate(settings.serverConfiguration.tls)
            metadata["tlsFingerprint"] = "\(fingerprint.map(String.init(describing:)) ?? "none")"
        } catch {
            logger.error(
                "SIGHUP: the TLS certificate could not be loaded; keeping the old one", metadata: ["error": "\(error)"])
        }
        logger.notice("SIGHUP: configuration reloaded", metadata: metadata)
        let restart = settings.keysNeedingRestart(comparedTo: started)
        if !restart.isEmpty {
            logger.warning(
                "SIGHUP: these changes need a restart", metadata: ["keys": "\(restart.joined(separator: ", "))"])
        }
    }

    /// The settings given as flags, by configuration key: they win over every other source.
    private var flagValues: [String: ConfigValue] {
        var values: [String: ConfigValue] = [:]
        func set(_ key: String, _ content: ConfigContent?) {
            if let content { values[key] = ConfigValue(content, isSecret: false) }
        }
        set("data", dataDirectory.map { .string($0) })
        set("host", host.map { .string($0) })
        set("port", port.map { .int($0) })
        set("portSearch", portSearch.map { .int($0) })
        set("name", name.map { .string($0) })
        set("tls.certificate", tlsCertificate.map { .string($0) })
        set("tls.key", tlsKey.map { .string($0) })
        set("tls.insecurePlaintext", insecurePlaintext ? .bool(true) : nil)
        set("metricsAddress", metricsAddress.map { .string($0) })
        set("adminSocket", adminSocket.map { .string($0) })
        set("maxConnections", maximumConnections.map { .int($0) })
        set("maxFrameSize", maximumFrameSize.map { .int($0) })
        set("minimumUserID", minimumUserID.map { .int(Int($0)) })
        set("replaceSessions", replacesSessions ? .bool(true) : nil)
        set("passwordCost", passwordCost.map { .int($0) })
        set("eventLoops", eventLoops.map { .int($0) })
        set("heartbeat", heartbeat.map { .double($0) })
        set("idleTimeout", idleTimeout.map { .double($0) })
        set("durability", durability.map { .string($0.rawValue) })
        set("messageStorage", messageStorage.map { .string($0.rawValue) })
        set("historyDays", historyDays.map { .int($0) })
        set("maxFileSize", maximumFileSize.map { .int($0) })
        set("transferQuota", transferQuota.map { .int($0) })
        set("transferRetention", transferRetention.map { .double($0) })
        set("logLevel", output.logLevel.map { .string($0.rawValue) })
        return values
    }

    func run() async throws {
        let out = Output(json: output.json)
        let settings = try await ServerSettings.load(flags: flagValues, file: configFile)
        RuntimeLogLevel.level = settings.level
        do {
            try FileManager.default.createDirectory(atPath: settings.data, withIntermediateDirectories: true)
        } catch {
            throw CommandFailure(message: "cannot create the data directory \(settings.data): \(error)")
        }
        // The metrics backend must be in place before the server makes its metric handles.
        let registry = PrometheusCollectorRegistry()
        if settings.metricsAddress != nil {
            var factory = PrometheusMetricsFactory(registry: registry)
            factory.valueHistogramBuckets["parley_store_commit_batch_size"] = [
                1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
            ]
            factory.durationHistogramBuckets["parley_store_commit_duration_seconds"] = [
                .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
                .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                .milliseconds(250), .seconds(1),
            ]
            MetricsSystem.bootstrap(factory)
        }
        let server = ParleyServer(configuration: settings.serverConfiguration, logger: Logger(label: "parley.server"))
        var statusChannel: (any Channel)?
        if let metricsAddress = settings.metricsAddress, let address = MetricsAddress(metricsAddress) {
            do {
                let channel = try await StatusHTTPServer(server: server, registry: registry)
                    .bind(host: address.host, port: address.port)
                statusChannel = channel
                let bound = channel.localAddress
                let url =
                    "http://\(address.host.contains(":") ? "[\(address.host)]" : address.host):\(bound?.port ?? address.port)"
                try out.emit(MetricsRecord(url: url), text: "metrics on \(url)")
            } catch {
                throw CommandFailure(message: "cannot serve metrics on \(metricsAddress): \(error)")
            }
        }
        defer { statusChannel?.close(promise: nil) }
        let services = ServiceGroup(
            configuration: .init(
                services: [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Logger(label: "parley.lifecycle")
            )
        )
        let logger = Logger(label: "parley.server")
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await services.run() }
                // SIGHUP: read the configuration again and apply what can change at run time (log
                // level, connection limit, TLS certificate); open connections stay.
                tasks.addTask { [flagValues, configFile] in
                    for await _ in await UnixSignalsSequence(trapping: .sighup) {
                        await Self.reload(
                            server, flags: flagValues, file: configFile, started: settings, logger: logger)
                    }
                }
                let address = try await server.listeningAddress
                let fingerprint = server.tlsCertificateFingerprint
                try out.emit(
                    ListeningRecord(host: address.host, port: address.port, tlsFingerprint: fingerprint?.description),
                    text: (fingerprint.map { "tls fingerprint \($0)\n" } ?? "tls off (insecure plaintext)\n")
                        + "listening on \(address)"
                )
                // The services ended (signal, error): stop the SIGHUP watcher too.
                try await tasks.next()
                tasks.cancelAll()
            }
        } catch let error as ParleyError {
            // Everything here is local (bad configuration, busy ports, storage): not a refusal.
            throw CommandFailure(message: error.description)
        }
    }
}

/// `--message-storage` values.
enum MessageStorageArgument: String, ExpressibleByArgument, CaseIterable {
    case log, sqlite
}

/// `--durability` values.
enum DurabilityArgument: String, ExpressibleByArgument, CaseIterable {
    case normal, full
}

/// `{"event":"metrics","url":...}`
struct MetricsRecord: Encodable {
    var event = "metrics"
    var url: String
}

/// `--metrics-address` HOST:PORT ("[::1]:9420" for IPv6; port 0 lets the system choose).
struct MetricsAddress {
    var host: String
    var port: Int

    init?(_ text: String) {
        guard let address = HostAndPort(text, allowsPortZero: true) else { return nil }
        (host, port) = (address.host, address.port)
    }
}

/// `{"event":"listening","host":...,"port":...}`
struct ListeningRecord: Encodable {
    var event = "listening"
    var host: String
    var port: Int
    var tlsFingerprint: String?
}
