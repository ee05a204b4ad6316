import Foundation
public import ParleyCore
import ParleyLink
import ParleyServerStore

extension ParleyServer {
    /// Everything an admin can tune, with the documented defaults.
    public struct Configuration: Sendable {
        /// The address to listen on. Default "0.0.0.0" (every IPv4 interface).
        public var host: String = "0.0.0.0"
        /// The TCP port; 0 lets the system choose. Default 7420. A busy port is an error ("address
        /// in use"), unless ``portSearchLimit`` allows trying the next ones.
        public var port: Int = 7420
        /// How many ports to try, from ``port`` up, when the port is busy; each skip is logged.
        /// Default 1: only ``port`` itself.
        public var portSearchLimit: Int = 1
        /// Where the SQLite database lives (created if missing).
        public var dataDirectory: String
        /// Sent to clients in the handshake.
        public var serverName: String = "parley"
        /// TLS on client connections. Default ``TLS/selfSigned``: TLS 1.3 with a certificate the
        /// server makes at first start in its data directory.
        public var tls: TLS = .selfSigned

        /// The largest frame accepted from a client (length field value). Default 1 MiB.
        public var maximumFrameSize: Int = 1 << 20
        /// Connections beyond this are refused with TOO_MANY_CONNECTIONS. Default 16,384.
        public var maximumConnections: Int = 16_384
        /// A PING goes out after this long without writing. Default 30 s.
        public var heartbeatInterval: Duration = .seconds(30)
        /// A connection that sends nothing for this long is closed. Default 90 s.
        public var idleTimeout: Duration = .seconds(90)

        /// Slow-consumer policy, part 1: bytes queued for one connection before the server stops
        /// pushing messages to it. Messages stay in the store and flow again once the client
        /// has read half of it. Default 1 MiB.
        public var outboundQueueLimit: Int = 1 << 20
        /// Slow-consumer policy, part 2: messages pushed to a session and not yet acknowledged
        /// before the server waits for acknowledgements. Default 512.
        public var deliveryWindow: Int = 512
        /// The most entries one user's contact list may hold (docs/PROTOCOL.md section 23).
        /// Default 1,000.
        public var maximumContacts: Int = 1000
        /// Slow-consumer policy, part 3: a connection whose queue stays over the limit this
        /// long is closed with SLOW_CONSUMER. Default 60 s.
        public var slowConsumerTimeout: Duration = .seconds(60)
        /// Requests one connection may have unanswered (being stored or looked up) before the
        /// server stops reading from it; of those, at most 8 directory queries. The server also
        /// stops reading while the connection's outbound queue is over ``outboundQueueLimit``.
        /// Default 256.
        public var maximumUnansweredRequests: Int = 256

        /// Assigned user IDs start here. Default 1000.
        public var minimumUserID: UserID = 1000
        /// The scrypt cost for new password hashes.
        public var passwordCost: PasswordCost = .default
        /// What a second logon of a logged-on user does: false (default) refuses it with
        /// SESSION_EXISTS; true closes the older session with SESSION_REPLACED.
        public var replacesExistingSession = false
        /// How long a resumption token issued at logon stays valid (docs/PROTOCOL.md section
        /// 9.2.1). Default 24 hours; zero issues none.
        public var resumptionTokenLifetime: Duration = .seconds(24 * 3600)
        /// Where logon throttling, resumption tokens and node records read the time: the system's clocks, or,
        /// in the package's tests, a clock that moves only when the test moves it.
        package var clock: ServerClock = .system

        /// SQLite durability. `.normal` (default) survives a process crash or `kill -9`;
        /// `.full` also survives power loss, at a cost in throughput.
        public var durability: Durability = .normal
        /// Where messages wait for their recipients. Default ``MessageStorage/log``.
        public var messageStorage: MessageStorage = .log
        /// How long acknowledged message IDs are remembered to drop resent duplicates. Default 7 days.
        public var deduplicationWindow: Duration = .seconds(7 * 24 * 3600)
        /// How often expired message IDs are pruned. Default 1 hour.
        public var pruneInterval: Duration = .seconds(3600)

        /// How many days the server keeps message history (docs/PROTOCOL.md section 25), in its own
        /// file `history.sqlite` in the data directory, written in the background. nil (the
        /// default): the server keeps no history and SEARCH_HISTORY fails with
        /// HISTORY_UNAVAILABLE (90). Must be 1...36,500.
        public var historyDays: Int?
        /// The most history items (accepted or acknowledged messages) waiting to be written;
        /// when the writer falls that far behind, new items are dropped and counted, and the
        /// message path goes on unslowed. Default 65,536.
        public var historyQueueCapacity: Int = 65_536

        /// Event-loop threads for connections. Default 1 (measured fastest on 2 cores).
        public var eventLoopThreads: Int = 1
        /// Threads for SQLite reads and password hashing. Default 2.
        public var blockingThreads: Int = 2

        /// Receives messages sent to ``/ParleyCore/UserID/server`` and the server's hooks; without
        /// one such messages fail with SERVER_APPLICATION_UNAVAILABLE.
        public var application: (any ParleyServerApplication)?
        /// How long the server waits for the application's decisions (a contact veto, a message
        /// inspection) before it counts them as refusals. Default 2 s.
        public var applicationDecisionTimeout: Duration = .seconds(2)

        /// File transfers (docs/PROTOCOL.md section 26): the largest file the server takes, in
        /// bytes. Default 1 GiB; 0 turns transfers off.
        public var maximumFileSize: UInt64 = 1 << 30
        /// The most bytes of transfers the server holds for one recipient (uploads in progress
        /// count at their declared size). Default 2 GiB.
        public var transferQuota: UInt64 = 2 << 30
        /// How long the server keeps a transfer its recipient has not fetched (from the end of
        /// its upload, or from its start while it is not finished); then the sender is told it
        /// expired. Default 7 days. Swept every ``pruneInterval``.
        public var transferRetention: Duration = .seconds(7 * 24 * 3600)
        /// The most bytes one TRANSFER_CHUNK carries and one TRANSFER_READ returns. Default 256 KiB;
        /// cut to ``maximumFrameSize`` - 128 when that is smaller, so a chunk and its meta fit a frame.
        public var transferChunkSize: Int = 256 << 10

        /// ``transferChunkSize`` as the server uses it: it fits in a frame with its meta section.
        var chunkSize: Int { max(256, min(transferChunkSize, maximumFrameSize - 128)) }

        /// Where the admin socket listens (docs/ADMIN.md). Default `admin.sock` in the data
        /// directory.
        public var adminSocket: AdminSocket = .inDataDirectory

        /// Where the server's admin socket (a Unix socket, mode 0600, the server's own user and
        /// root only) listens.
        public enum AdminSocket: Sendable, Hashable {
            /// `admin.sock` in the data directory.
            case inDataDirectory
            /// This path.
            case path(String)
            /// No admin socket.
            case off
        }

        /// The admin socket's path, or nil when it is off.
        public var adminSocketPath: String? {
            switch adminSocket {
            case .inDataDirectory: URL(fileURLWithPath: dataDirectory).appendingPathComponent("admin.sock").path
            case .path(let path): path
            case .off: nil
            }
        }

        public init(dataDirectory: String) {
            self.dataDirectory = dataDirectory
        }

        /// How the server secures client connections.
        public enum TLS: Sendable, Hashable {
            /// TLS 1.3 with a self-signed certificate kept in the data directory (made at first
            /// start, key mode 0600). Clients pin its fingerprint or trust it on first use.
            case selfSigned
            /// TLS 1.3 with the admin's certificate chain and private key (PEM files), e.g. from an
            /// internal CA; clients can then verify it with that CA.
            case certificate(chainFile: String, privateKeyFile: String)
            /// No TLS: passwords and messages cross the network in clear. For debugging only; clients
            /// must ask for plaintext too.
            case insecurePlaintext
        }

        /// Where the server keeps messages until their recipients acknowledge them.
        public enum MessageStorage: String, Sendable, Hashable, CaseIterable {
            /// An append-only log in the data directory's `messages` folder, one write per round
            /// of group commit, compacted in the background (docs/ARCHITECTURE.md). A server
            /// that kept its messages in SQLite before moves them to the log at start.
            case log
            /// Tables of the server's SQLite database, as before the log (slower; kept for
            /// comparison). The server refuses to start with it while the log holds messages.
            case sqlite
        }

        /// How hard SQLite works to keep committed data.
        public enum Durability: Sendable, Hashable {
            /// Survives a crash or `kill -9` of the server process (WAL, synchronous=NORMAL).
            case normal
            /// Also survives power loss (synchronous=FULL).
            case full
        }

        /// The scrypt cost: N = 2^log2N, block size r, parallelism p.
        public struct PasswordCost: Sendable, Hashable {
            public var log2N: Int
            public var blockSize: Int
            public var parallelism: Int

            public init(log2N: Int, blockSize: Int, parallelism: Int) {
                self.log2N = log2N
                self.blockSize = blockSize
                self.parallelism = parallelism
            }

            /// N = 2^14, r = 8, p = 1: 16 MiB and tens of milliseconds per hash.
            public static let `default` = PasswordCost(log2N: 14, blockSize: 8, parallelism: 1)
            /// For tests only: fast and weak.
            public static let insecureFastForTesting = PasswordCost(log2N: 4, blockSize: 1, parallelism: 1)
        }

        var databasePath: String {
            URL(fileURLWithPath: dataDirectory).appendingPathComponent("parley-server.sqlite").path
        }

        var messageLogPath: String {
            URL(fileURLWithPath: dataDirectory).appendingPathComponent("messages").path
        }

        var historyPath: String {
            URL(fileURLWithPath: dataDirectory).appendingPathComponent("history.sqlite").path
        }

        var historyJournalPath: String {
            URL(fileURLWithPath: dataDirectory).appendingPathComponent(HistoryJournal.fileName).path
        }

        var link: LinkConfiguration {
            LinkConfiguration(
                maximumFrameSize: maximumFrameSize,
                heartbeatInterval: heartbeatInterval,
                idleTimeout: idleTimeout
            )
        }

        func validate() throws(ParleyError) {
            func check(_ condition: Bool, _ message: String) throws(ParleyError) {
                guard condition else { throw ParleyError(code: .invalidRequest, message: "configuration: \(message)") }
            }
            try check((0...65535).contains(port), "port must be 0...65535")
            try check(portSearchLimit >= 1, "portSearchLimit must be at least 1")
            try check(maximumFrameSize >= 1024, "maximumFrameSize must be at least 1024")
            try check(maximumConnections >= 1, "maximumConnections must be at least 1")
            try check(deliveryWindow >= 1, "deliveryWindow must be at least 1")
            try check(maximumContacts >= 0, "maximumContacts must be at least 0")
            try check(minimumUserID.rawValue >= 1, "minimumUserID must be at least 1")
            try check((1...24).contains(passwordCost.log2N), "passwordCost.log2N must be 1...24")
            // The ranges PasswordHasher.verify accepts: a hash it would refuse must never be made.
            try check((1...64).contains(passwordCost.blockSize), "passwordCost.blockSize must be 1...64")
            try check((1...16).contains(passwordCost.parallelism), "passwordCost.parallelism must be 1...16")
            try check(
                passwordCost.workBytes <= PasswordCost.maximumWorkBytes,
                "passwordCost: 128 * 2^log2N * blockSize * parallelism must be at most 1 GiB"
            )
            try check(idleTimeout > heartbeatInterval, "idleTimeout must be longer than heartbeatInterval")
            if let historyDays { try check((1...36_500).contains(historyDays), "historyDays must be 1...36500") }
            try check(historyQueueCapacity >= 1, "historyQueueCapacity must be at least 1")
            try check(applicationDecisionTimeout > .zero, "applicationDecisionTimeout must be positive")
            try check(transferChunkSize >= 256, "transferChunkSize must be at least 256")
            try check(transferRetention > .zero, "transferRetention must be positive")
            if case .path(let path) = adminSocket {
                // sockaddr_un holds 107 bytes and a NUL.
                try check(!path.isEmpty && path.utf8.count <= 107, "the admin socket path must be 1...107 bytes")
            }
        }
    }
}
