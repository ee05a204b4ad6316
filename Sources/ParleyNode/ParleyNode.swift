import Foundation
public import Logging
import NIOCore
import NIOPosix
import ParleyClient
public import ParleyCore
public import ParleyDiscovery
import ParleyLink
import ParleyNodeStore
import ParleyWire
public import ServiceLifecycle
import Synchronization

/// A Parley node: the SDK facade that a chat program embeds.
///
/// A node talks to the central server when one is configured (client/server mode) and to other
/// nodes over direct, mutually authenticated TLS 1.3 links (docs/PROTOCOL.md, "Node-to-node
/// links"). Without a server (peer-to-peer mode) it finds peers through the injected
/// ``/ParleyDiscovery/Discovery`` and exchanges messages with them directly.
///
/// The node works while ``run()`` runs. ``send(_:to:id:)`` picks a route per message: a direct
/// link when both users allow it and the peer's node is known, else the server, else the durable
/// outbox in the data directory, which is flushed in order as soon as a route exists (a peer
/// appears, the server comes back), also after a restart. A message keeps its ID on every path,
/// and receivers drop copies they have delivered already, so a message acknowledged by any route
/// is never lost nor delivered twice, and messages from one sender to one recipient stay in order.
///
/// A received message is acknowledged (to the peer, or to the server) only once it is recorded
/// as seen and stored in the node inbox in the data directory; the application gets it from
/// ``events``, again after a crash until it has asked for the next event (see ``Events``).
///
/// Liveness comes from the links: a direct link sends PINGs after ``Configuration/heartbeatInterval``
/// of silence and closes after ``Configuration/peerTimeout`` without input; a peer whose last link
/// closed and cannot be redialled is reported down even while discovery still lists it.
public final class ParleyNode: Sendable {
    let configuration: Configuration
    let discovery: (any Discovery)?
    let logger: Logger
    let identity: NodeIdentity
    /// The registry (SQLite), only through its queue, off the cooperative pool.
    let registry: RegistryAccess
    /// Held until the node stops: one data directory serves one node at a time.
    private let directoryLock: DataDirectoryLock

    let eventQueue: EventQueue
    let linkStream: AsyncStream<DirectLink>
    let linkContinuation: AsyncStream<DirectLink>.Continuation
    /// Wakes the outbox flusher: a route may have appeared.
    let flushSignal = WakeUpSignal()
    /// Signals that peers changed: contacts' LAN-derived presence is computed again.
    let presenceSignal = WakeUpSignal()
    /// Finished by ``shutdown()``: ``run()`` tears down.
    private let stopSignal = WakeUpSignal()
    let state = Mutex(State())
    /// Held per recipient while a message to it is routed or its outbox entries flushed: keeps
    /// each recipient's messages in order.
    let sendLocks = KeyedSerialLock<Recipient>()
    /// Command handlers by name (``handleCommands(named:_:)``), for commands over direct links
    /// and through the server; their runs wait here for ``run()``.
    let commands = CommandHandlers(capacity: 256)
    /// File transfers over direct links, both directions (docs/PROTOCOL.md section 26.9).
    let directTransfers = DirectTransfers()

    struct State {
        enum Phase { case idle, running, stopped }

        var phase = Phase.idle
        var port: Int?
        var portWaiters: [CheckedContinuation<Result<Int, ParleyError>, Never>] = []
        var listener: (any Channel)?
        var peers = PeerDirectory()
        var links = LinkTable<DirectLink>(dialBackoff: ParleyNode.dialBackoff)
        var server = ServerSession<ParleyClient>()
        var routes = RouteMemory()
        /// The presence advertised on the LAN (``ParleyNode/setStatus(_:)``).
        var status = "online"
        /// What discovery advertises, once it does.
        var advertised: ServiceRecord?
        var stopping = false
    }

    /// A peer refused this node's last link, or this node refused the peer's claim; dialling it
    /// again waits, longer each time.
    struct Refusal: Sendable {
        var count: Int
        var until: ContinuousClock.Instant
        var delay: Duration
        var reason: ParleyError
        /// The peer refused (true), or this node did (false).
        var byPeer: Bool = true

        /// About 5 s after the first refusal, doubling up to about 5 minutes.
        static let backoff = Backoff(initial: .seconds(5), maximum: .seconds(300))
    }

    /// After a failed dial: about 1 s, doubling up to about 30 s.
    static let dialBackoff = Backoff(initial: .seconds(1), maximum: .seconds(30))

    /// A user's node as the server's user info shows it.
    struct ServerNode: Sendable {
        var nodeID: NodeID
        var publicKey: [UInt8]
        var addresses: [String]
        /// The user consents to direct links.
        var allowsDirectLinks: Bool
        /// The user was logged on when the server was asked (its addresses are current).
        var isOnline: Bool
        var fetchedAt: ContinuousClock.Instant
    }

    /// Locks the data directory, and opens (or creates) the node's key and registry in it.
    ///
    /// The directory stays locked (an `flock` on `node.lock` in it) until the node has stopped
    /// (``run()`` returned, or ``shutdown()`` before it ran), is deinitialized, or its process
    /// ends: a second node on the same directory, in this process or another, would share this
    /// node's ID and outbox, so it is refused.
    ///
    /// - Parameters:
    ///   - configuration: Where the node keeps its data, who it is, and how it reaches others.
    ///   - discovery: Finds peers and advertises this node; nil for none (direct links then only
    ///     reach nodes the server's user info names).
    ///   - logger: Where the node logs.
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/storageError``
    ///   when another node holds the data directory, or the key or the registry cannot be read or
    ///   created.
    public init(
        configuration: Configuration,
        discovery: (any Discovery)?,
        logger: Logger = Logger(label: "parley.node")
    ) throws(ParleyError) {
        self.configuration = configuration
        self.discovery = discovery
        self.logger = logger
        directoryLock = try DataDirectoryLock(dataDirectory: configuration.dataDirectory)
        identity = try Self.identity(dataDirectory: configuration.dataDirectory)
        let registry = RegistryAccess(
            try NodeRegistry(
                dataDirectory: configuration.dataDirectory,
                configuration: .init(unpinCommand: Self.unpinCommand(dataDirectory: configuration.dataDirectory))))
        let eventQueue = EventQueue(
            limit: max(1, configuration.unreadEventLimit),
            confirm: Self.inboxConfirmer(registry, logger: logger))
        self.registry = registry
        self.eventQueue = eventQueue
        // What the last run acknowledged and its application did not confirm comes first.
        let replayed = try registry.runBlocking { registry throws(ParleyError) in
            try Self.replayInbox(registry, into: eventQueue)
        }
        if replayed > 0 {
            logger.info("delivering messages the last run did not see confirmed", metadata: ["count": "\(replayed)"])
        }
        (linkStream, linkContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(1024))
        // The cached contact list, for LAN-derived presence before the server answers.
        do throws(ParleyError) {
            let cached = try registry.runBlocking { registry throws(ParleyError) in try registry.cachedContacts() }
            state.withLock { $0.server.loadCachedContacts(cached.map(\.userID)) }
        } catch {
            logger.warning("cannot read the cached contact list", metadata: ["error": "\(error)"])
        }
    }

    /// This node's ID.
    public var nodeID: NodeID { identity.nodeID }

    /// The ID of the node kept in `dataDirectory` (its key is created there if missing): what
    /// discovery needs before the node exists, to filter out the node's own advertisement.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/storageError``
    ///   when the key cannot be read or created.
    public static func nodeID(dataDirectory: String) throws(ParleyError) -> NodeID {
        try identity(dataDirectory: dataDirectory).nodeID
    }

    private static func identity(dataDirectory: String) throws(ParleyError) -> NodeIdentity {
        do throws(NodeIdentityError) {
            return try NodeIdentity(dataDirectory: dataDirectory)
        } catch {
            throw ParleyError(code: .storageError, message: "cannot load the node key: \(error.message)", cause: error)
        }
    }

    /// Peer, message, route and server connection events, in order. Iterate from one task.
    ///
    /// At most ``Configuration/unreadEventLimit`` events wait unread; past that, messages are held back
    /// (never lost) and other events dropped, see ``Events``.
    public var events: Events { Events(queue: eventQueue) }

    /// The port of the direct-link listener, once ``run()`` has bound it.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/notConnected``
    ///   when the node stopped before it listened.
    public var listeningPort: Int {
        get async throws(ParleyError) {
            let result = await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Result<Int, ParleyError>? in
                    if let port = state.port { return .success(port) }
                    if state.phase == .stopped {
                        return .failure(ParleyError(code: .notConnected, message: "the node is stopped"))
                    }
                    state.portWaiters.append(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
            return try result.get()
        }
    }

    /// The peers known from discovery and direct links.
    public func peers() -> [PeerInfo] {
        state.withLock { $0.peers.peers }
    }

    /// The presence this node advertises on the LAN: "online" until ``setStatus(_:)``.
    public var status: String { state.withLock { $0.status } }

    /// The longest status ``setStatus(_:)`` takes, in UTF-8 bytes.
    public static let maximumStatusLength = 64

    /// Sets the presence this node advertises on the LAN, such as "online", "away", "busy" or a
    /// short status text; peers see it in ``PeerInfo/status`` (a ``Event/peerChanged(_:)``).
    ///
    /// Takes effect at once while the node runs, else when it starts advertising.
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/invalidRequest``
    ///   when `status` is empty, longer than ``maximumStatusLength`` bytes, contains control
    ///   characters, or is "offline" (which peers use for a node they cannot reach).
    public func setStatus(_ status: String) async throws(ParleyError) {
        guard !status.isEmpty, status.utf8.count <= Self.maximumStatusLength,
            !status.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else {
            throw ParleyError(
                code: .invalidRequest,
                message: "a status is 1 to \(Self.maximumStatusLength) bytes of UTF-8 without control characters"
            )
        }
        guard status != "offline" else {
            throw ParleyError(code: .invalidRequest, message: "\"offline\" is what peers show for unreachable nodes")
        }
        let record = state.withLock { state -> ServiceRecord? in
            state.status = status
            state.advertised?.status = status
            return state.advertised
        }
        guard let discovery, let record else { return }
        do {
            try await discovery.update(record)
        } catch {
            // notAdvertising: the first advertisement is on its way, and runDiscovery sends the
            // new status after it.
            guard error.code == .notAdvertising else {
                throw ParleyError(
                    code: .internalError, message: "cannot advertise the new status: \(error)", cause: error)
            }
        }
    }

    // MARK: Running

    /// Binds the direct-link listener, advertises the node through discovery, connects to the
    /// server if one is configured, and works until ``shutdown()``, task cancellation or (run as a
    /// swift-service-lifecycle `Service` in a `ServiceGroup`, after its discovery service)
    /// graceful shutdown.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` when the listener cannot be bound, or `run()` was
    ///   called before.
    public func run() async throws {
        let start = state.withLock { state -> Bool in
            guard state.phase == .idle, !state.stopping else { return false }
            state.phase = .running
            state.links.start()
            return true
        }
        guard start else {
            throw ParleyError(code: .internalError, message: "run() was called twice or after shutdown()")
        }
        let listener: any Channel
        do {
            listener = try await bindListener()
        } catch {
            finishStopped(error)
            throw error
        }
        let port = listener.localAddress?.port ?? configuration.listenPort
        let waiters = state.withLock { state in
            state.listener = listener
            state.port = port
            defer { state.portWaiters = [] }
            return state.portWaiters
        }
        for waiter in waiters { waiter.resume(returning: .success(port)) }
        logger.info("listening for direct links", metadata: ["node.id": "\(nodeID)", "port": "\(port)"])

        // In a ServiceGroup, graceful shutdown stops the node as shutdown() does.
        await withGracefulShutdownHandler {
            await runParts(port: port, listener: listener)
        } onGracefulShutdown: {
            Task { await self.shutdown() }
        }
        finishStopped(nil)
    }

    /// The node's tasks, until ``shutdown()``.
    private func runParts(port: Int, listener: any Channel) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.serveLinks() }
            group.addTask { await self.runFlusher() }
            group.addTask { await self.runTicker() }
            group.addTask { while await self.presenceSignal.wait() { self.publishContactPresence() } }
            group.addTask { await self.commands.runJobs() }
            if let discovery {
                group.addTask { await self.runDiscovery(discovery, port: port) }
            }
            if var server = configuration.server {
                // A node remembers the servers it trusted on first use in its own data directory,
                // not in the user's (ServerTrust.defaultKnownServersFile).
                if server.security == .default {
                    server.security = .tls(
                        .trustOnFirstUse(knownServersFile: configuration.dataDirectory + "/known-servers"))
                }
                let address = listener.localAddress
                group.addTask { await self.runServerClient(server, port: port, listener: address) }
            }
            flushSignal.signal()
            while await stopSignal.wait() {}
            await tearDown()
            commands.finish()
            group.cancelAll()
        }
    }

    /// Withdraws the advertisement, logs off the server, closes every link and makes ``run()``
    /// return. Messages in the outbox stay there for the next run.
    public func shutdown() async {
        let first = state.withLock { state -> Bool in
            defer {
                state.stopping = true
                state.links.stop()
            }
            return !state.stopping
        }
        guard first else { return }
        stopSignal.finish()
        if state.withLock({ $0.phase == .idle }) { finishStopped(nil) }
    }

    private func tearDown() async {
        let (listener, links, client) = state.withLock { state in
            state.stopping = true
            state.links.stop()
            return (state.listener, state.links.everyLink, state.server.client)
        }
        if let discovery { await discovery.withdraw() }
        if let client { await client.shutdownGracefully() }
        try? await listener?.close()
        for link in links { try? await link.channel.close() }
        // Direct transfers being received end here; their partial files stay for a resume.
        directTransfers.stopReceiving()
        // Writes submitted without waiting (history, caches) are done before run() returns.
        await registry.drain()
    }

    private func finishStopped(_ error: (any Error)?) {
        let waiters = state.withLock { state in
            state.phase = .stopped
            state.stopping = true
            state.links.stop()
            defer { state.portWaiters = [] }
            return state.portWaiters
        }
        // A listener that could not be bound says why (the port is in use, say).
        let failure =
            (error as? ParleyError)
            ?? ParleyError(code: .notConnected, message: "the node stopped before it listened")
        for waiter in waiters { waiter.resume(returning: .failure(failure)) }
        linkContinuation.finish()
        flushSignal.finish()
        presenceSignal.finish()
        eventQueue.finish()
        directoryLock.release()
        if let error { logger.debug("the node stopped", metadata: ["error": "\(error)"]) }
    }

    /// Signals the outbox flusher every half peer timeout, to retry routes that may have come
    /// back, expires queued messages that waited too long, and prunes the remembered message IDs (received, and sent from the outbox) once an
    /// hour (and at start).
    private func runTicker() async {
        let interval = max(configuration.peerTimeout / 2, .milliseconds(500))
        var nextPrune = ContinuousClock.now
        while !Task.isCancelled {
            if ContinuousClock.now >= nextPrune {
                await pruneSeen()
                nextPrune = .now + .seconds(3600)
            }
            await expireQueued()
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
            flushSignal.signal()
        }
    }

    private func pruneSeen() async {
        let cutoff = Date(timeIntervalSinceNow: -configuration.seenRetention.timeInterval)
        do {
            let (seen, delivered) = try await registry.run { registry throws(ParleyError) in
                let seen = try registry.pruneSeen(before: cutoff)
                let delivered =
                    try registry.pruneDelivered(before: cutoff) + registry.pruneAwaitingReceipts(before: cutoff)
                return (seen, delivered)
            }
            if seen + delivered > 0 {
                logger.debug(
                    "forgot old message IDs", metadata: ["seen": "\(seen)", "delivered": "\(delivered)"])
            }
        } catch {
            logger.warning("cannot prune old message IDs", metadata: ["error": "\(error)"])
        }
    }

    func emit(_ events: [Event]) {
        for event in events { eventQueue.offer(event) }
        // Peers came, went or changed status: the LAN-derived presence of contacts may follow
        // (computed on its own task: callers hold the state lock).
        if !events.isEmpty { presenceSignal.signal() }
    }

    /// This node's user, as claimed on links and used as the sender of direct messages.
    var ownUser: UserID? { configuration.credentials?.userID }
}

/// A node is a swift-service-lifecycle service: in a `ServiceGroup`, after its discovery (so that
/// it withdraws its advertisement before discovery stops), graceful shutdown stops it as
/// ``ParleyNode/shutdown()`` does.
extension ParleyNode: Service {}
