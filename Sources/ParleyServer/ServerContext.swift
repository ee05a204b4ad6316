import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleyServerStore
import Synchronization

/// Everything a connection handler needs from the server, shared by all connections.
final class ServerContext: Sendable {
    let configuration: ParleyServer.Configuration
    let store: ServerStore
    /// Messages until their recipients acknowledge them (the message log, or `store`'s tables).
    let messages: any MessageStore
    let registry: SessionRegistry
    let hasher: PasswordHasher
    /// Password-guessing limits, shared by every connection.
    let throttle: Mutex<LogonThrottle>
    /// Runs blocking work (SQLite reads, password hashing) off the event loops.
    let blockingPool: NIOThreadPool
    let logger: Logger
    let applicationInbox: ApplicationInbox
    /// The application's hooks (notifications and decisions); inert without an application.
    let hooks: ApplicationHooks
    /// The next connection number (``ServerConnection/id``).
    private let connectionNumbers = Atomic<UInt64>(0)
    /// Group commit for SEND_MESSAGE and ACK_MESSAGES; it calls back into the registry.
    let committer: MessageCommitter
    let metrics: ServerMetrics
    /// Who is online with which presence (docs/PROTOCOL.md section 23).
    let presence = PresenceHub()
    /// The server application's command handlers (``ParleyServer/commands``).
    let commands: ServerCommands
    /// Commands waiting for a reply, with their deadlines (docs/PROTOCOL.md section 24).
    let pendingCommands = CommandTable()
    /// Writes message history in the background; nil when the server keeps none.
    let history: HistoryRecorder?

    init(
        configuration: ParleyServer.Configuration,
        store: ServerStore,
        messages: (any MessageStore)? = nil,
        registry: SessionRegistry,
        blockingPool: NIOThreadPool,
        logger: Logger,
        metrics: ServerMetrics,
        applicationInbox: ApplicationInbox,
        hooks: ApplicationHooks = ApplicationHooks(application: nil),
        commands: ServerCommands = ServerCommands(),
        history: HistoryRecorder? = nil
    ) {
        self.history = history
        self.hooks = hooks
        self.metrics = metrics
        self.commands = commands
        self.configuration = configuration
        self.store = store
        let messages = messages ?? store
        self.messages = messages
        self.registry = registry
        self.hasher = PasswordHasher(cost: configuration.passwordCost)
        self.throttle = Mutex(LogonThrottle())
        self.blockingPool = blockingPool
        self.logger = logger
        self.applicationInbox = applicationInbox
        self.committer = MessageCommitter(
            store: messages,
            logger: logger,
            metrics: metrics,
            registry: registry,
            accepted: Self.historyOfAccepted(history),
            acknowledged: { acknowledged in
                // history: deliveries acknowledged by their recipients, recorded in the background.
                if let history {
                    history.delivered(
                        acknowledged.lazy.map {
                            (sender: $0.sender, messageID: $0.messageID, recipient: $0.recipient, at: $0.acknowledgedAt)
                        })
                }
                for ack in acknowledged where ack.wantsReceipt {
                    registry.session(for: ack.sender)?.execute { $0.deliveryReceipt(ack) }
                }
            }
        )
    }

    /// The committer's hook for new deliveries: records them in `history`, if there is one.
    private static func historyOfAccepted(
        _ history: HistoryRecorder?
    ) -> (@Sendable ([MessageCommitter.LiveDelivery]) -> Void)? {
        guard let history else { return nil }
        return { deliveries in
            // history: messages accepted (stored for these recipients), recorded in the background.
            history.accepted(
                deliveries.lazy.map {
                    HistoryRecorder.Accepted(
                        sender: $0.message.sender, recipient: $0.recipient, messageID: $0.message.messageID,
                        sentAt: $0.message.sentAt, isText: $0.message.isText,
                        body: Array($0.message.body.readableBytesView))
                })
        }
    }

    /// A number for a new connection, unique while the server runs.
    func nextConnectionID() -> UInt64 {
        connectionNumbers.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// Runs `work` on the blocking pool; the result arrives on `eventLoop`.
    func blocking<T: Sendable>(
        on eventLoop: any EventLoop,
        _ work: @escaping @Sendable () throws(ParleyError) -> T
    ) -> EventLoopFuture<T> {
        blockingPool.runIfActive(eventLoop: eventLoop) {
            try work()
        }
    }
}

extension ServerContext {
    func hashPassword(_ password: String) throws(ParleyError) -> String {
        do {
            return try hasher.hash(password)
        } catch {
            throw ParleyError(code: .internalError, message: "hashing the password failed", cause: error)
        }
    }
}

extension ServerContext {
    /// Tells every online watcher of `change.user` (the users whose contact lists hold it) of
    /// the change. Reads the store: call it off the event loops.
    func announce(_ change: PresenceHub.Change) {
        let watchers: [UserID]
        do {
            watchers = try store.watchers(of: change.user)
        } catch {
            logger.warning("cannot find whom to tell of a presence change", metadata: ["error": "\(error)"])
            return
        }
        for watcher in watchers {
            registry.session(for: watcher)?.execute { $0.presenceChanged(change) }
        }
    }
}
