import Foundation
import NIOCore
import ParleyClient
public import ParleyCore
import ParleyNodeStore

extension ParleyNode {
    /// Keeps a client session with the server while the node runs: logs on with the credentials,
    /// declares this node (key, direct addresses, consent), forwards messages, and starts over
    /// with a new client when one gives up.
    func runServerClient(_ server: ParleyClient.Configuration, port: Int, listener: SocketAddress?) async {
        var configuration = server
        configuration.node = NodeAdvertisement(
            nodeID: nodeID.description,
            publicKey: identity.publicKeyDER,
            directAddresses: self.configuration.allowsDirectLinks
                ? directAddresses(port: port, listener: listener) : [],
            allowsDirectLinks: self.configuration.allowsDirectLinks
        )
        while !Task.isCancelled, !state.withLock({ $0.stopping || $0.server.kicked }) {
            // The node's command handlers answer the commands that come through the server.
            let client = ParleyClient(configuration: configuration, logger: logger, commandHandlers: commands)
            state.withLock { $0.server.clientStarted(client) }
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await client.run()
                    } catch {
                        self.logger.debug("the server is unreachable", metadata: ["error": "\(error)"])
                    }
                }
                group.addTask {
                    let connected = WakeUpSignal()
                    await withTaskGroup(of: Void.self) { session in
                        if let credentials = self.configuration.credentials {
                            session.addTask { await self.logOn(client, credentials, whenConnected: connected) }
                        }
                        await self.consume(client, connected: connected)
                        // The client has stopped: a logon waiting for its next try has nothing to try.
                        session.cancelAll()
                    }
                }
            }
            state.withLock { $0.server.clientStopped() }
            do {
                try await Task.sleep(for: server.retry.maximumDelay)
            } catch {
                return
            }
        }
    }

    /// Logs on with `credentials` once the client is connected, and keeps trying, with
    /// ``logOnBackoff``, while the server refuses for a reason that may pass (the user's session
    /// from before a crash is still open: SESSION_EXISTS; too many attempts; a server error).
    /// Wrong credentials end the tries (``Event/serverLogOnFailed(_:)``). Once logged on, the
    /// client logs on again by itself after each reconnection.
    private func logOn(_ client: ParleyClient, _ credentials: Credentials, whenConnected: WakeUpSignal) async {
        var failures = 0
        while await whenConnected.wait() {
            while true {
                do throws(ParleyError) {
                    let result = try await client.logOn(userID: credentials.userID, password: credentials.password)
                    cacheServerInfo(result.user)
                    return
                } catch {
                    if Task.isCancelled || error.code == .cancelled { return }
                    if error.code == .alreadyLoggedOn { return }
                    if error.refusesCredentials {
                        logger.debug("the server refused the credentials", metadata: ["error": "\(error)"])
                        eventQueue.offer(.serverLogOnFailed(error))
                        return
                    }
                    // The connection is gone: the next one (a `.connected` event) tries again.
                    if [.notConnected, .shuttingDown].contains(error.code) { break }
                    failures += 1
                    let asked = Duration.milliseconds(error.retryAfterMilliseconds ?? 0)
                    let delay = max(Self.logOnBackoff.delay(afterFailures: failures), asked)
                    logger.debug(
                        "logging on to the server failed; trying again",
                        metadata: ["error": "\(error)", "retry.after": "\(delay)"])
                    eventQueue.offer(.serverLogOnDeferred(error, retryAfter: delay))
                    do {
                        try await Task.sleep(for: delay)
                    } catch {
                        return
                    }
                }
            }
        }
    }

    /// Between logon attempts the server refused for a passing reason: about 1 s, doubling up to
    /// about 30 s.
    static let logOnBackoff = Backoff(initial: .seconds(1), maximum: .seconds(30))

    private func consume(_ client: ParleyClient, connected: WakeUpSignal) async {
        defer { connected.finish() }
        // Messages are acknowledged here, once stored in the node inbox (or known as seen): a
        // crash before that leaves them with the server, which delivers them again.
        var events = client.manuallyAcknowledgedEvents.makeAsyncIterator()
        while true {
            // Take a message only when the node's reader has room for it, so the server keeps
            // what the reader cannot take yet.
            await eventQueue.waitForRoom()
            guard let event = await events.next() else { return }
            switch event {
            case .message(let message):
                do {
                    try await deliver(message, sender: .user(message.sender), from: nil, route: .server)
                    client.acknowledge(message)
                } catch {
                    logger.warning(
                        "cannot store a message from the server; it stays unacknowledged and comes again",
                        metadata: ["message.id": "\(message.id)", "error": "\(error)"])
                }
            case .deliveryReceipt(let receipt):
                eventQueue.offer(.deliveryReceipt(receipt))
                recordReceipt(receipt)  // history: delivered
                let logger = self.logger
                registry.submit { registry throws(ParleyError) in
                    try registry.confirmReceipt(recipient: receipt.recipient, messageID: receipt.messageID)
                } failed: { error in
                    logger.warning(
                        "cannot record a delivery receipt",
                        metadata: ["message.id": "\(receipt.messageID)", "error": "\(error)"])
                }
            case .command(let command):
                eventQueue.offer(.commandReceived(command, from: nil, route: .server))
            case .connectionStateChanged(let connection):
                let loggedOn: Bool
                if case .loggedOn = connection { loggedOn = true } else { loggedOn = false }
                // The state first: whoever sees the event may send at once.
                let kicked: Bool
                if case .disconnected(let reason?) = connection, reason.code == .kicked {
                    kicked = true
                } else {
                    kicked = false
                }
                let actions = state.withLock { state in
                    let peers = state.peers.peers
                    return state.server.connectionChanged(loggedOn: loggedOn, kicked: kicked, lanPeers: peers)
                }
                if kicked {
                    logger.info("an admin closed this node's server session; not connecting to the server again")
                }
                eventQueue.offer(.serverConnection(connection))
                perform(actions)
                if case .connected = connection { connected.signal() }
            case .presence(let update):
                receivedServerPresence(update)
            case .transferOffered(let offer):
                eventQueue.offer(.fileOffered(offer))
            case .transferStatus(let status):
                eventQueue.offer(.transferStatus(status))
            default:
                break
            }
        }
    }

    /// Caches what the server says about a user: its info, and its node (the server vouches for
    /// the key) for direct links.
    func cacheServerInfo(_ info: UserInfo) {
        let (now, logger) = (Date(), self.logger)
        // The server sends the node's ID as text; one that is not a node ID names no node.
        let nodeID = info.nodeID.flatMap { NodeID($0) }
        registry.submit { registry throws(ParleyError) in
            try registry.record(user: info, nodeID: nodeID, source: .server, seenAt: now)
            if let node = nodeID, let key = info.nodePublicKey, !key.isEmpty {
                try registry.record(
                    node: node,
                    publicKey: key,
                    userID: info.userID,
                    userName: info.userName,
                    addresses: Array(info.directAddresses.prefix(NodeRegistry.maximumAddressCount)),
                    source: .server,
                    seenAt: now
                )
            }
        } failed: { error in
            logger.debug("cannot cache user info", metadata: ["user.id": "\(info.userID)", "error": "\(error)"])
        }
        guard let node = nodeID, let key = info.nodePublicKey else { return }
        let known = ServerNode(
            nodeID: node,
            publicKey: key,
            addresses: info.directAddresses,
            allowsDirectLinks: info.allowsDirectLinks,
            isOnline: info.isOnline,
            fetchedAt: .now
        )
        state.withLock { $0.server.learned(known, of: info.userID) }
    }

    /// Asks the server about `user`'s node unless asked recently (or, with `force`, in any case),
    /// if the server is there.
    func refreshServerNode(of user: UserID, force: Bool = false) async {
        let client = state.withLock { $0.server.clientToAsk(about: user, force: force, now: .now) }
        guard let client else { return }
        do {
            cacheServerInfo(try await client.userInfo(user))
        } catch {
            logger.debug("cannot look up a user's node", metadata: ["user.id": "\(user)", "error": "\(error)"])
        }
    }

    /// What the server says about `user`, or, when the server cannot be asked, what the local
    /// cache remembers (`cached` true).
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/userNotFound``
    ///   when neither knows the user.
    public func whois(_ user: UserID) async throws(ParleyError) -> CachedAnswer<UserInfo> {
        let client = loggedOnClient
        if let client {
            do throws(ParleyError) {
                let info = try await client.userInfo(user)
                cacheServerInfo(info)
                return CachedAnswer(info, isCached: false)
            } catch {
                // the server is away: the cache answers
                guard error.meansServerUnavailable else { throw error }
            }
        }
        guard let cached = try await registry.run({ registry throws(ParleyError) in try registry.cachedUser(user) })
        else {
            throw ParleyError(code: .userNotFound, message: "user \(user) is not in the local cache")
        }
        var info = cached.info
        info.isOnline = state.withLock { $0.peers.node(ofUser: user) != nil }
        return CachedAnswer(info, isCached: true)
    }

    /// Searches the server's user directory, or, when the server cannot be asked, the local
    /// cache (`cached` true) with the same query semantics. In the cache, the users whose nodes
    /// are online on the LAN count as online.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` when the server refuses the query (an invalid one),
    ///   or the cache cannot be read.
    public func findUsers(_ query: UserQuery) async throws(ParleyError) -> CachedAnswer<UserSearchResult> {
        let client = loggedOnClient
        if let client {
            do throws(ParleyError) {
                let result = try await client.findUsers(query)
                for info in result.users { cacheServerInfo(info) }
                return CachedAnswer(result, isCached: false)
            } catch {
                // the server is away: the cache answers
                guard error.meansServerUnavailable else { throw error }
            }
        }
        let online = state.withLock { state in
            Set(state.peers.peers.filter(\.online).compactMap(\.userID))
        }
        let found = try await registry.run { registry throws(ParleyError) in
            try registry.findCachedUsers(query, onlineUserIDs: online)
        }
        return CachedAnswer(
            UserSearchResult(users: found.users.map(\.info), truncated: found.truncated), isCached: true)
    }
}

extension ParleyError {
    /// The server refused a logon for good: trying again with the same credentials cannot work.
    var refusesCredentials: Bool {
        [.invalidCredentials, .userNotFound, .invalidUserID, .invalidRequest, .unsupportedVersion].contains(code)
    }

    /// The server could not answer (no connection, no session, no time): another route, or the
    /// cache, may; any other error is the server's answer.
    var meansServerUnavailable: Bool {
        switch code {
        case .notConnected, .timedOut, .shuttingDown, .cancelled, .notLoggedOn: true
        default: false
        }
    }
}
