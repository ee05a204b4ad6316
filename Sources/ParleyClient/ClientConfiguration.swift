public import ParleyCore

extension ParleyClient {
    /// How to reach the server and how hard to try.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Connection attempts, back-off and time limits.
        public var retry: RetryPolicy
        /// After a connection that worked is lost, reconnect (with back-off) and log on again.
        /// Default true.
        public var reconnects: Bool = true
        /// The largest frame accepted from the server. Default 1 MiB + 64 KiB: a MESSAGE event
        /// carries a body the server accepted in a frame of up to its own maximum (1 MiB by
        /// default) plus a larger meta, and a recipient that refused it would get it first again
        /// after every reconnect (docs/PROTOCOL.md, section 21).
        public var maximumFrameSize: Int = (1 << 20) + 64 * 1024
        /// Sent in HELLO, for the server's logs.
        public var agent: String = "parley-swift/0.1.0"
        /// How many received message IDs are remembered to drop redeliveries. Default 10,000.
        public var deduplicationCapacity: Int = 10_000
        /// The node this client speaks for, declared with every LOGON and REGISTER (the automatic
        /// logon after a reconnect too) so the server records it and shows it in the user's info.
        /// Nil (the default): nothing is declared, and the node the server recorded last stays.
        public var node: NodeAdvertisement? = nil
        /// TLS and how the server is verified. Default: TLS 1.3 with trust on first use, remembered
        /// in ``/ParleyCore/ServerTrust/defaultKnownServersFile`` (a changed certificate is refused with
        /// ``/ParleyCore/ParleyError/Code/serverNotTrusted``). Pin the fingerprint the server prints, or name a
        /// CA file, for stricter checks; plaintext only for debugging against a plaintext server.
        public var security: ConnectionSecurity = .default

        public init(host: String, port: Int, retry: RetryPolicy = .local) {
            self.host = host
            self.port = port
            self.retry = retry
        }

        /// Parses "HOST:PORT" ("[::1]:7420" for IPv6).
        public init(server: String, retry: RetryPolicy = .local) throws(ParleyError) {
            guard let separator = server.lastIndex(of: ":"),
                let port = Int(server[server.index(after: separator)...]), (1...65535).contains(port)
            else {
                throw ParleyError(code: .invalidRequest, message: "server address \"\(server)\" is not HOST:PORT")
            }
            var host = String(server[..<separator])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else {
                throw ParleyError(code: .invalidRequest, message: "server address \"\(server)\" has no host")
            }
            self.init(host: host, port: port, retry: retry)
        }
    }

    /// Connection attempts and back-off, with presets for the usual networks.
    public struct RetryPolicy: Sendable, Hashable {
        /// Attempts for the first connection before ``ParleyClient/run()`` gives up.
        public var connectAttempts: Int
        /// The pause after the first failed attempt; it doubles up to ``maximumDelay`` (each pause
        /// with ±20 % jitter).
        public var initialDelay: Duration
        public var maximumDelay: Duration
        /// A TCP connect that takes longer fails.
        public var connectTimeout: Duration
        /// A request that gets no answer in this time fails with TIMED_OUT. Requests made while
        /// disconnected wait for the connection within this time too.
        public var requestTimeout: Duration

        public init(
            connectAttempts: Int,
            initialDelay: Duration,
            maximumDelay: Duration,
            connectTimeout: Duration,
            requestTimeout: Duration
        ) {
            self.connectAttempts = connectAttempts
            self.initialDelay = initialDelay
            self.maximumDelay = maximumDelay
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
        }

        /// Same machine: 3 attempts, 100 ms doubling to 1 s, 1 s connect, 10 s requests.
        public static let local = RetryPolicy(
            connectAttempts: 3,
            initialDelay: .milliseconds(100),
            maximumDelay: .seconds(1),
            connectTimeout: .seconds(1),
            requestTimeout: .seconds(10)
        )
        /// A LAN: 5 attempts, 250 ms doubling to 5 s, 3 s connect, 15 s requests.
        public static let lan = RetryPolicy(
            connectAttempts: 5,
            initialDelay: .milliseconds(250),
            maximumDelay: .seconds(5),
            connectTimeout: .seconds(3),
            requestTimeout: .seconds(15)
        )
        /// The internet: 8 attempts, 1 s doubling to 30 s, 10 s connect, 30 s requests.
        public static let wan = RetryPolicy(
            connectAttempts: 8,
            initialDelay: .seconds(1),
            maximumDelay: .seconds(30),
            connectTimeout: .seconds(10),
            requestTimeout: .seconds(30)
        )

        /// The pause after `failures` failed attempts in a row (at least 1): ``initialDelay``
        /// doubled for each failure after the first, capped at ``maximumDelay``, then multiplied
        /// by a random factor between 0.8 and 1.2, so that clients cut off together (a server
        /// restart) do not all come back at the same instant.
        public func delay(afterFailures failures: Int) -> Duration {
            Backoff(initial: initialDelay, maximum: maximumDelay).delay(afterFailures: failures)
        }
    }
}
