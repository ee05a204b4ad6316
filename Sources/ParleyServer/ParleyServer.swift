import CoreMetrics
import Foundation
public import Logging
import NIOCore
import NIOPosix
public import ParleyCore
import ParleyLink
import ParleyServerStore
import ParleyWire
public import ServiceLifecycle
import Synchronization

/// The central Parley server: user directory, store-and-forward messaging, sessions.
///
/// Run it as a swift-service-lifecycle `Service` (graceful shutdown tells every client the
/// server is going away), or call ``run()`` in a task and ``shutdown()`` when done:
///
/// ```swift
/// let server = ParleyServer(configuration: .init(dataDirectory: "/var/lib/parley"), logger: logger)
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     group.addTask { try await server.run() }
///     let address = try await server.listeningAddress
///     print("listening on \(address)")
///     // ...
///     await server.shutdown()
/// }
/// ```
public final class ParleyServer: Service, Sendable {
    /// The version of this implementation, sent in HELLO answers.
    public static let version = "0.1.0"

    public let configuration: Configuration
    private let logger: Logger
    private let state = Mutex(RunState.idle)
    private let listening: AsyncStream<Result<ListeningAddress, ParleyError>>
    private let listeningContinuation: AsyncStream<Result<ListeningAddress, ParleyError>>.Continuation
    let address = Mutex<Result<ListeningAddress, ParleyError>?>(nil)
    /// The certificate new connections get; replaced by ``reloadTLSCertificate(_:)``.
    private let tlsIdentity = Mutex<ServerTLSIdentity?>(nil)
    /// swift-metrics handles, made from the metrics system the application bootstrapped (if any)
    /// when the server is created.
    let metrics: ServerMetrics
    private let connectionLimit: Atomic<Int>
    let startedAt = Date()
    /// The server application's command handlers, by name (docs/PROTOCOL.md section 24).
    public let commands = ServerCommands()

    private enum RunState {
        case idle
        case running(Running)
        case shuttingDown
        case finished
    }

    private struct Running: Sendable {
        let channel: any Channel
        let context: ServerContext
        let group: MultiThreadedEventLoopGroup
    }

    public init(configuration: Configuration, logger: Logger = Logger(label: "parley.server")) {
        self.configuration = configuration
        self.logger = logger
        self.metrics = ServerMetrics(factory: MetricsSystem.factory)
        self.connectionLimit = Atomic(configuration.maximumConnections)
        (listening, listeningContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Where the server accepts connections, once ``run()`` has bound its socket.
    ///
    /// Waits until the socket is bound; throws if binding failed.
    public var listeningAddress: ListeningAddress {
        get async throws(ParleyError) {
            if let known = address.withLock({ $0 }) { return try known.get() }
            for await result in listening {
                return try result.get()
            }
            if let known = address.withLock({ $0 }) { return try known.get() }
            throw ParleyError(code: .shuttingDown, message: "the server stopped before it was listening")
        }
    }

    private func announce(_ result: Result<ListeningAddress, ParleyError>) {
        address.withLock { $0 = result }
        listeningContinuation.yield(result)
        listeningContinuation.finish()
    }

    /// Opens the store, binds the socket and serves until shut down (graceful shutdown of the
    /// service group, task cancellation, or ``shutdown()``).
    public func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(configuration.eventLoopThreads, 1))
        let blockingPool = NIOThreadPool(numberOfThreads: max(configuration.blockingThreads, 1))
        blockingPool.start()
        let context: ServerContext
        let channel: any Channel
        let inbox = ApplicationInbox(isAvailable: configuration.application != nil, capacity: 1024)
        let hooks = ApplicationHooks(
            application: configuration.application, timeout: configuration.applicationDecisionTimeout)
        let adminListener: AdminListener?
        do {
            try configuration.validate()
            try loadTLSIdentity(configuration.tls)
            let store = try ServerStore(
                path: configuration.databasePath,
                configuration: .init(
                    durability: configuration.durability == .full ? .full : .normal,
                    deduplicationWindow: configuration.deduplicationWindow
                )
            )
            let messages = try Self.openMessages(configuration, store: store, logger: logger)
            let history = try configuration.historyDays.map { days throws(ParleyError) in
                try HistoryRecorder(
                    store: try HistoryStore(
                        path: configuration.historyPath, durability: configuration.durability == .full ? .full : .normal
                    ),
                    journal: try HistoryJournal(
                        path: configuration.historyJournalPath,
                        durability: configuration.durability == .full ? .full : .normal
                    ),
                    retention: .seconds(days * 24 * 3600),
                    capacity: configuration.historyQueueCapacity,
                    logger: logger
                )
            }
            context = ServerContext(
                configuration: configuration,
                store: store,
                messages: messages,
                registry: SessionRegistry(metrics: metrics),
                blockingPool: blockingPool,
                logger: logger,
                metrics: metrics,
                applicationInbox: inbox,
                hooks: hooks,
                commands: commands,
                history: history
            )
            channel = try await bind(group: group, context: context)
            if let path = configuration.adminSocketPath, path.utf8.count <= 107 {
                do {
                    adminListener = try await AdminListener.bind(path: path, group: group, logger: logger)
                } catch {
                    try? await channel.close()
                    throw error
                }
            } else {
                if configuration.adminSocket == .inDataDirectory {
                    logger.notice("no admin socket: the data directory's path is too long for one; set adminSocket")
                }
                adminListener = nil
            }
        } catch {
            let failure = ServerConnectionHandler.parleyError(error)
            announce(.failure(failure))
            try? await blockingPool.shutdownGracefully()
            try? await group.shutdownGracefully()
            throw failure
        }
        let started = state.withLock { state -> Bool in
            guard case .idle = state else { return false }
            state = .running(Running(channel: channel, context: context, group: group))
            return true
        }
        guard started else {
            try? await channel.close()
            await adminListener?.close()
            try? await blockingPool.shutdownGracefully()
            try? await group.shutdownGracefully()
            let error = ParleyError(code: .internalError, message: "run() was called twice or after shutdown()")
            // Whoever waits for the address must not wait forever (a first run() announced already).
            if address.withLock({ $0 == nil }) { announce(.failure(error)) }
            throw error
        }
        let local = ListeningAddress(channel.localAddress, requestedHost: configuration.host)
        logger.info("listening", metadata: ["address": "\(local)"])
        announce(.success(local))
        hooks.notify(.started)

        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await withThrowingDiscardingTaskGroup { application in
                    // The application's tasks are not cancelled at the end: they work off what
                    // is queued once the queues are finished, then return.
                    if let receiver = configuration.application {
                        application.addTask {
                            for await message in inbox.stream {
                                await receiver.receive(message, from: self)
                            }
                        }
                        application.addTask { await hooks.deliverNotifications(to: self) }
                        application.addTask { await hooks.runDecisions(for: self) }
                    }
                    try await withThrowingDiscardingTaskGroup { tasks in
                        // Command handlers run here, never on an event loop.
                        tasks.addTask { [commands] in await commands.table.runJobs() }
                        tasks.addTask { [configuration] in
                            while !Task.isCancelled {
                                try? await Task.sleep(for: configuration.pruneInterval)
                                context.committer.prune()
                                // File transfers not fetched in time (docs/PROTOCOL.md section 26.7).
                                _ = try? await context.blocking(on: group.next()) { context.sweepTransfers() }.get()
                            }
                        }
                        if let history = context.history {
                            tasks.addTask { [configuration] in
                                await Self.sweepHistory(history, every: configuration.pruneInterval)
                            }
                        }
                        if let adminListener {
                            tasks.addTask { await adminListener.serve(AdminRequestHandler(server: self)) }
                        }
                        try await channel.closeFuture.get()
                        await adminListener?.close()
                        commands.table.finish()
                        tasks.cancelAll()
                    }
                    inbox.finish()
                    hooks.finish()
                }
            } onGracefulShutdown: {
                self.beginShutdown()
            }
        } onCancel: {
            self.beginShutdown()
        }
        await finishShutdown(context: context, group: group)
        try? await blockingPool.shutdownGracefully()
    }

    /// The fingerprint of the TLS certificate clients see, once ``run()`` has loaded it; nil while
    /// the server is not running, or runs in plaintext.
    public var tlsCertificateFingerprint: CertificateFingerprint? {
        tlsIdentity.withLock { $0?.fingerprint }
    }

    /// Loads the certificate and key again (for an admin's renewed certificate, e.g. on SIGHUP).
    /// New connections get the new certificate; open ones keep theirs.
    ///
    /// - Returns: the new certificate's fingerprint; nil in plaintext.
    ///
    /// - Parameter tls: the TLS settings to load from, when they changed (new file paths);
    ///   nil reloads the configured ones. Turning TLS on or off needs a restart.
    @discardableResult
    public func reloadTLSCertificate(_ tls: Configuration.TLS? = nil) throws(ParleyError) -> CertificateFingerprint? {
        let tls = tls ?? configuration.tls
        guard (tls == .insecurePlaintext) == (configuration.tls == .insecurePlaintext) else {
            throw ParleyError(code: .invalidRequest, message: "turning TLS on or off needs a restart")
        }
        try loadTLSIdentity(tls)
        return tlsCertificateFingerprint
    }

    /// Connections beyond this are refused with TOO_MANY_CONNECTIONS; starts as the
    /// configuration's ``Configuration/maximumConnections`` and can change while the server runs
    /// (open connections stay).
    public var maximumConnections: Int {
        get { connectionLimit.load(ordering: .relaxed) }
        set { connectionLimit.store(max(newValue, 1), ordering: .relaxed) }
    }

    private func loadTLSIdentity(_ tls: Configuration.TLS) throws(ParleyError) {
        let identity: ServerTLSIdentity?
        do {
            switch tls {
            case .selfSigned:
                let (selfSigned, created) = try ServerTLSIdentity.selfSigned(
                    dataDirectory: configuration.dataDirectory
                )
                if created {
                    logger.notice(
                        "created a self-signed TLS certificate",
                        metadata: ["fingerprint": "\(selfSigned.fingerprint)", "file": "\(selfSigned.source)"]
                    )
                }
                identity = selfSigned
            case .certificate(let chainFile, let privateKeyFile):
                identity = try ServerTLSIdentity(certificateChainFile: chainFile, privateKeyFile: privateKeyFile)
            case .insecurePlaintext:
                logger.warning("TLS is off: passwords and messages cross the network in clear")
                identity = nil
            }
        } catch {
            throw ParleyError(code: .internalError, message: "TLS: \(error)", cause: error)
        }
        if let identity {
            logger.info(
                "TLS certificate loaded",
                metadata: ["fingerprint": "\(identity.fingerprint)", "source": "\(identity.source)"]
            )
        }
        tlsIdentity.withLock { $0 = identity }
    }

    /// Stops accepting connections, tells every client the server is shutting down, and
    /// makes ``run()`` return once the connections are closed.
    public func shutdown() async {
        beginShutdown()
    }

    private func beginShutdown() {
        let (running, neverRan) = state.withLock { state -> (Running?, Bool) in
            switch state {
            case .running(let running):
                state = .shuttingDown
                return (running, false)
            case .idle:
                state = .finished
                return (nil, true)
            case .shuttingDown, .finished:
                return (nil, false)
            }
        }
        if neverRan, address.withLock({ $0 == nil }) {
            announce(.failure(ParleyError(code: .shuttingDown, message: "the server was shut down before it ran")))
        }
        guard let running else { return }
        running.context.hooks.notify(.stopping)
        logger.info("shutting down", metadata: ["connections": "\(running.context.registry.connectionCount)"])
        let connections = running.context.registry.closeForShutdown()
        // The handlers live on their connections' event loops: tell each one there.
        let closed = connections.map { connection in
            connection.eventLoop.flatSubmit {
                let link = try? connection.pipeline.syncOperations.handler(type: LinkHandler.self)
                if let session = link?.frameReceiver as? ServerConnectionHandler {
                    session.serverShuttingDown(reason: "the server is shutting down")
                } else {
                    // No session (the connection is being torn down): just close it.
                    connection.close(promise: nil)
                }
                return connection.closeFuture
            }
        }
        let loop = running.channel.eventLoop
        // Close the listener once the clients were told, or after a grace period at most.
        let done = loop.makePromise(of: Void.self)
        loop.scheduleTask(in: .seconds(5)) { done.succeed() }
        EventLoopFuture.whenAllComplete(closed, on: loop).whenComplete { _ in done.succeed() }
        done.futureResult.whenComplete { _ in running.channel.close(promise: nil) }
    }

    private func finishShutdown(context: ServerContext, group: MultiThreadedEventLoopGroup) async {
        for connection in context.registry.closeForShutdown() {
            try? await connection.close()
        }
        await context.committer.shutdown()
        await context.history?.shutdown()
        context.pendingCommands.failAll(ParleyError(code: .shuttingDown, message: "the server is shutting down"))
        try? await group.shutdownGracefully()
        state.withLock { $0 = .finished }
        logger.info("stopped")
    }

    private func bind(group: MultiThreadedEventLoopGroup, context: ServerContext) async throws -> any Channel {
        let configuration = self.configuration
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(
                .recvAllocator,
                value: CompactRecvAllocator(minimum: 64, initial: 64, maximum: 65536)
            )
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(
                    low: configuration.outboundQueueLimit / 2,
                    high: max(configuration.outboundQueueLimit, 2)
                )
            )
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // TLS first, so that even a refusal below reaches the client inside TLS.
                    if let identity = self.tlsIdentity.withLock({ $0 }) {
                        let metrics = self.metrics
                        try channel.pipeline.syncOperations.addParleyServerTLSHandlers(identity: identity) {
                            ($0 ? metrics.tlsHandshakes : metrics.tlsHandshakeFailures).increment()
                        }
                    }
                    if let error = context.registry.addConnection(channel, limit: self.maximumConnections) {
                        self.metrics.connectionsRefused.increment()
                        logger.debug("refusing a connection", metadata: ["reason": "\(error.code)"])
                        channel.writeAndFlush(Frame.error(error, requestID: 0, fatal: true).encoded())
                            .whenComplete { _ in channel.close(promise: nil) }
                        return
                    }
                    self.metrics.connectionsOpened.increment()
                    // The handler leaves the registry and reports the close when its channel goes
                    // inactive (no close callback held per connection).
                    // The channel's cached address (`channel.remoteAddress`; the context's asks the
                    // socket and makes a new one).
                    let handler = ServerConnectionHandler(server: context, remoteAddress: channel.remoteAddress)
                    let sync = channel.pipeline.syncOperations
                    try sync.addParleyLinkHandlers(configuration: configuration.link)
                    // The session is the link's receiver, not a handler of the pipeline.
                    handler.attach(to: try sync.handler(type: LinkHandler.self))
                    context.hooks.notify(.connectionOpened(handler.connection))
                }
            }
        var port = configuration.port
        var attempts = 0
        while true {
            do {
                return try await bootstrap.bind(host: configuration.host, port: port).get()
            } catch let error as IOError where error.errnoCode == EADDRINUSE && port != 0 {
                attempts += 1
                guard attempts < configuration.portSearchLimit, port < 65535 else {
                    let ports = port == configuration.port ? "port \(port)" : "ports \(configuration.port)...\(port)"
                    throw ParleyError(
                        code: .internalError,
                        message: "address in use: \(ports) on \(configuration.host) is taken by another process"
                            + (configuration.portSearchLimit == 1 ? " (--port-search N tries the next ports)" : ""),
                        cause: error
                    )
                }
                logger.warning("port \(port) is busy; trying \(port + 1)")
                port += 1
            }
        }
    }

    /// Sends a message from the server application (sender ``/ParleyCore/UserID/server``) to one
    /// user or several (see also ``broadcast(_:id:)`` for every user online).
    ///
    /// Stored and delivered like any other message; returns one result per recipient.
    public func send(_ body: MessageBody, to recipients: [UserID], id: MessageID = .random()) async throws(ParleyError)
        -> [DeliveryResult]
    {
        let context = try requireRunningContext()
        var seen = Set<UserID>()
        let users = recipients.filter { $0 != .server && seen.insert($0).inserted }
        guard !users.isEmpty else { return [] }
        let message = NewMessage(
            messageID: id,
            sender: .server,
            recipients: users,
            allRecipients: users,
            isText: body.isText,
            body: ByteBuffer(bytes: body.bytes),
            sentAt: Date(),
            wantsReceipt: false
        )
        let outcome = await withCheckedContinuation { continuation in
            context.committer.submit(
                MessageCommitter.Submission(message: message) {
                    continuation.resume(returning: $0)
                }
            )
        }
        let outcomes = try outcome.get()
        return users.map { user in
            switch outcomes[user] {
            case .stored(let delivery)?:
                DeliveryResult(
                    recipient: user,
                    status: context.registry.isOnline(user) ? .acceptedOnline : .acceptedOffline,
                    duplicate: delivery.duplicate
                )
            case .recipientNotFound?, nil:
                DeliveryResult(
                    recipient: user,
                    status: .failed(ParleyError(code: .recipientNotFound, message: "no user \(user)"))
                )
            }
        }
    }

    /// The running server's shared state, if it runs.
    var runningContext: ServerContext? {
        state.withLock { state in
            if case .running(let running) = state { return running.context }
            return nil
        }
    }

    /// How many connections are open right now.
    public var connectionCount: Int {
        state.withLock { state in
            if case .running(let running) = state { return running.context.registry.connectionCount }
            return 0
        }
    }
}

/// Where a server listens.
public struct ListeningAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init(_ address: SocketAddress?, requestedHost: String) {
        self.host = address?.ipAddress ?? requestedHost
        self.port = address?.port ?? 0
    }

    /// A peer's address as the admin and the hooks show it ("IP:port"), or "" when unknown.
    static func text(of address: SocketAddress?) -> String {
        address.map { ListeningAddress($0, requestedHost: "").description } ?? ""
    }

    /// "HOST:PORT", with brackets around IPv6 hosts.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
