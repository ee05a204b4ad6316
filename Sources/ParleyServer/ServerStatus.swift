public import Foundation

extension ParleyServer {
    /// What the server is doing now, for admins: the `/status` page of `parley server`.
    public struct Status: Sendable, Codable, Hashable {
        /// Message totals since the server started.
        public struct Messages: Sendable, Codable, Hashable {
            /// SEND_MESSAGEs taken (one per message, whatever its recipients).
            public var received: Int
            /// Deliveries (message, recipient) written to the store.
            public var stored: Int
            /// MESSAGE events written to recipients (stored messages after a logon included).
            public var delivered: Int
            /// Deliveries whose acknowledgements were recorded.
            public var acknowledged: Int
        }

        /// The configuration in force, without secrets.
        public struct Settings: Sendable, Codable, Hashable {
            public var host: String
            public var port: Int
            /// "self-signed", "certificate" (the admin's) or "off".
            public var tls: String
            public var tlsFingerprint: String?
            public var maximumConnections: Int
            public var maximumFrameSize: Int
            public var deliveryWindow: Int
            public var outboundQueueLimit: Int
            public var heartbeatSeconds: Double
            public var idleTimeoutSeconds: Double
            public var durability: String
            public var dataDirectory: String
        }

        public var version: String
        public var serverName: String
        public var startedAt: Date
        public var uptimeSeconds: Double
        public var connections: Int
        public var sessionsOnline: Int
        /// Connections that are not logged on.
        public var guests: Int
        /// Online users, lowest IDs first, at most ``onlineUsersListed`` of them.
        public var onlineUsers: [UInt32]
        /// Messages waiting to be written to the store.
        public var commitQueueDepth: Int
        public var messages: Messages
        public var settings: Settings

        /// The most online users ``onlineUsers`` lists.
        public static let onlineUsersListed = 200
    }

    /// The server's state now. While the server is not running, the counts are zero.
    public var status: Status {
        let context = runningContext
        let (connections, sessions, users) =
            context?.registry.snapshot(listing: Status.onlineUsersListed) ?? (0, 0, [])
        let now = Date()
        return Status(
            version: Self.version,
            serverName: configuration.serverName,
            startedAt: startedAt,
            uptimeSeconds: now.timeIntervalSince(startedAt),
            connections: connections,
            sessionsOnline: sessions,
            guests: max(connections - sessions, 0),
            onlineUsers: users.map(\.rawValue),
            commitQueueDepth: context?.committer.queueDepth ?? 0,
            messages: metrics.totals,
            settings: settings
        )
    }

    private var settings: Status.Settings {
        let tls: String
        switch configuration.tls {
        case .selfSigned: tls = "self-signed"
        case .certificate: tls = "certificate"
        case .insecurePlaintext: tls = "off"
        }
        let address = try? address.withLock { $0 }?.get()
        return Status.Settings(
            host: address?.host ?? configuration.host,
            port: address?.port ?? configuration.port,
            tls: tls,
            tlsFingerprint: tlsCertificateFingerprint?.description,
            maximumConnections: maximumConnections,
            maximumFrameSize: configuration.maximumFrameSize,
            deliveryWindow: configuration.deliveryWindow,
            outboundQueueLimit: configuration.outboundQueueLimit,
            heartbeatSeconds: Double(configuration.heartbeatInterval.wireMilliseconds) / 1000,
            idleTimeoutSeconds: Double(configuration.idleTimeout.wireMilliseconds) / 1000,
            durability: configuration.durability == .full ? "full" : "normal",
            dataDirectory: configuration.dataDirectory
        )
    }
}
