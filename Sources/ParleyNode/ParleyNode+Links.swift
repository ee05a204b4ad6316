import Foundation
import NIOCore
import NIOPosix
import ParleyCore
import ParleyDiscovery
import ParleyLink
import ParleyNodeStore
import ParleyWire

extension ParleyNode {
    var linkConfiguration: LinkConfiguration {
        // A link held back by its serving task (backpressure) is not idle: its peer's frames wait.
        LinkConfiguration(
            heartbeatInterval: configuration.heartbeatInterval,
            idleTimeout: configuration.peerTimeout,
            idleTimeoutWhileNotReading: false
        )
    }

    /// How long opening a link (TCP, TLS, both NODE_HELLOs) may take.
    var dialTimeout: Duration { min(configuration.peerTimeout, .seconds(5)) }

    /// This node's NODE_HELLO.
    var helloFrame: Frame {
        var hello = Parley_V1_NodeHello()
        hello.nodeID = nodeID.description
        hello.userID = ownUser?.rawValue ?? 0
        hello.userName = String(configuration.name.prefix(UserInfo.maximumFieldLength))
        if let server = configuration.server { hello.server = Self.address(host: server.host, port: server.port) }
        return Frame(type: .nodeHello, requestID: 0, message: hello)
    }

    static func address(host: String, port: Int) -> String {
        HostAndPort(host: host, port: port).description
    }

    /// The addresses this node tells the server it accepts links on: the listening address, or
    /// for a listener on every interface the interfaces' addresses (IPv4 first, then global
    /// IPv6 when the listener takes IPv6, loopback last; at most 8, the server's limit).
    /// Link-local IPv6 addresses are left out: they mean nothing without the interface, which
    /// differs from host to host (discovery reports them with their scope).
    func directAddresses(port: Int, listener: SocketAddress?) -> [String] {
        let wildcard = ["0.0.0.0", "::"]
        if let host = configuration.listenHost, !wildcard.contains(host) {
            return [Self.address(host: host, port: port)]
        }
        let takesIPv6: Bool
        if case .v6 = listener { takesIPv6 = true } else { takesIPv6 = false }
        var hosts: [(host: String, rank: Int)] = []
        do {
            for device in try System.enumerateDevices() {
                guard let address = device.address, let ip = address.ipAddress else { continue }
                let rank: Int
                switch address {
                case .v4:
                    rank = ip.hasPrefix("127.") ? 3 : 0
                case .v6 where takesIPv6:
                    if ip.lowercased().hasPrefix("fe80:") { continue }
                    rank = ip == "::1" ? 3 : 1
                default:
                    continue
                }
                if !hosts.contains(where: { $0.host == ip }) { hosts.append((ip, rank)) }
            }
        } catch {
            logger.debug("cannot list the network interfaces", metadata: ["error": "\(error)"])
        }
        let ordered = hosts.enumerated().sorted { ($0.element.rank, $0.offset) < ($1.element.rank, $1.offset) }
        var addresses = ordered.map { Self.address(host: $0.element.host, port: port) }
        if addresses.isEmpty { addresses = [Self.address(host: "127.0.0.1", port: port)] }
        return Array(addresses.prefix(8))
    }

    // MARK: Listening

    func bindListener() async throws(ParleyError) -> any Channel {
        let identity = self.identity
        let allows = configuration.allowsDirectLinks
        let linkConfiguration = self.linkConfiguration
        let hello = helloFrame
        let links = linkContinuation
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addParleyNodeLinkHandlers(
                        identity: identity,
                        role: .accepting { _, _ in allows },
                        configuration: linkConfiguration
                    )
                    let link = try DirectLink.install(on: channel, hello: hello)
                    if self.admit(link), case .enqueued = links.yield(link) { return }
                    logger.debug("refusing a direct link: the node is not serving links")
                    channel.close(promise: nil)
                }
            }
        // Every interface: one dual-stack socket where IPv6 works, else IPv4 only.
        let hosts = configuration.listenHost.map { [$0] } ?? ["::", "0.0.0.0"]
        var failure: (host: String, error: any Error)?
        for host in hosts {
            do {
                return try await bootstrap.bind(host: host, port: configuration.listenPort).get()
            } catch {
                logger.debug("cannot listen on \(host)", metadata: ["error": "\(error)"])
                failure = (host, error)
                // A busy port is busy on every address: the IPv4 fallback is for hosts without IPv6.
                if (error as? IOError)?.errnoCode == EADDRINUSE { break }
            }
        }
        let port = configuration.listenPort
        let reason: String
        switch failure?.error {
        case let error as IOError where error.errnoCode == EADDRINUSE:
            reason = "address in use (another program listens on port \(port))"
        case let error as IOError:
            reason = String(cString: strerror(error.errnoCode))
        case let error?:
            reason = "\(error)"
        case nil:
            reason = "no address to listen on"
        }
        throw ParleyError(
            code: .internalError,
            message: "cannot listen for direct links on \(failure?.host ?? "?") port \(port): \(reason)"
        )
    }

    // MARK: Dialling

    /// Who waits for a dial (``link(to:addresses:timeout:purpose:)``).
    enum DialPurpose {
        /// A message that can go through the server instead.
        case sendWithAlternative
        /// A message that would otherwise wait in the outbox.
        case sendWithoutAlternative
        /// Nobody: a standing link, a probe after a backoff, a redial.
        case background
    }

    /// A ready link to `peer`: an open one, or a new one to the first of `addresses` that answers.
    ///
    /// A peer that could not be dialled lately (``DialMemory``) is not dialled again before its
    /// backoff expires; for a message that can go through the server, not at all: once the
    /// backoff expires, one dial starts in the background and this call fails at once, so the
    /// send takes the server instead of waiting for a dial that will likely time out.
    ///
    /// - Parameters:
    ///   - timeout: How long each dial (TCP, TLS, both NODE_HELLOs) may take; nil for
    ///     ``dialTimeout``.
    ///   - purpose: Who waits for this link: a message that has another route (the server), which
    ///     must not wait for a peer that failed lately; a message with no other route but the
    ///     outbox, which may as well try; or nobody (a standing link, a probe, a redial).
    func link(
        to peer: NodeID,
        addresses: [String],
        timeout: Duration? = nil,
        purpose: DialPurpose = .background
    ) async throws(ParleyError) -> DirectLink {
        let decision = state.withLock {
            $0.links.decideDial(to: peer, purpose: purpose, hasAddresses: !addresses.isEmpty, now: .now)
        }
        switch decision {
        case .use(let open):
            return open
        case .refused(let refusal):
            let what = refusal.byPeer ? "node \(peer) refused this node's last link" : "this node refused node \(peer)"
            throw ParleyError(
                code: .notConnected,
                message: "\(what) (\(refusal.reason.message)); not dialling it again yet"
            )
        case .dial:
            break
        case .wait(let probe):
            if probe { flushSignal.signal() }
            throw ParleyError(
                code: .notConnected, message: "node \(peer) could not be reached lately; not dialling it again yet")
        }
        var lastError = ParleyError(code: .notConnected, message: "no address is known for node \(peer)")
        for address in addresses {
            do throws(ParleyError) {
                return try await dial(peer, address: address, timeout: timeout ?? dialTimeout)
            } catch {
                logger.debug(
                    "dialling failed", metadata: ["peer.id": "\(peer)", "address": "\(address)", "error": "\(error)"])
                lastError = error
            }
        }
        if !addresses.isEmpty, let delay = state.withLock({ $0.links.dialFailed(peer, now: .now) }) {
            logger.debug(
                "not dialling the peer again for a while", metadata: ["peer.id": "\(peer)", "delay": "\(delay)"])
        }
        throw lastError
    }

    private func dial(_ peer: NodeID, address: String, timeout: Duration) async throws(ParleyError) -> DirectLink {
        guard state.withLock({ $0.links.serving }) else {
            throw ParleyError(code: .notConnected, message: "the node is not running")
        }
        guard let target = HostAndPort(address) else {
            throw ParleyError(code: .invalidRequest, message: "\"\(address)\" is not HOST:PORT")
        }
        let (host, port) = (target.host, target.port)
        let identity = self.identity
        let linkConfiguration = self.linkConfiguration
        let hello = helloFrame
        let link: DirectLink
        do {
            link = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.nanoseconds(timeout.nanoseconds))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addParleyNodeLinkHandlers(
                            identity: identity,
                            role: .dialling(expecting: peer),
                            configuration: linkConfiguration
                        )
                        return try DirectLink.install(on: channel, hello: hello)
                    }
                }
        } catch {
            throw ParleyError(code: .notConnected, message: "cannot connect to \(address)", cause: error)
        }
        guard admit(link), case .enqueued = linkContinuation.yield(link) else {
            link.channel.close(promise: nil)
            throw ParleyError(code: .notConnected, message: "the node is not serving links")
        }
        _ = try await link.waitUntilReady(timeout: timeout)
        return link
    }

    /// Registers a new link for the teardown to close, unless the node is stopping. A link that
    /// connects while the node stops would otherwise stay open, unserved, until its dial timed
    /// out: the peer would take its NODE_HELLO for a sign of life of a node that is gone.
    private func admit(_ link: DirectLink) -> Bool {
        state.withLock { $0.links.admit(link) }
    }

    // MARK: Serving

    /// Serves every link, each in its own child task, until the node stops.
    func serveLinks() async {
        await withDiscardingTaskGroup { group in
            for await link in linkStream {
                group.addTask { await self.serve(link) }
            }
        }
    }

    private func serve(_ link: DirectLink) async {
        if !admit(link) {
            link.fail(ParleyError(code: .shuttingDown, message: "the node is shutting down"))
        }
        // One frame at a time: while this task is behind, the link stops reading from the peer.
        do {
            try await link.serveFrames { frame in await handle(frame, on: link) }
        } catch {
            logger.debug("the direct link failed", metadata: ["error": "\(error)"])
        }
        link.channel.close(promise: nil)
        // The handler fails the link's requests when the channel closes: wait for that.
        try? await link.channel.closeFuture.get()
        let hello = link.hello
        let redial = state.withLock { state -> Bool in
            let redial = state.links.linkClosed(link, peer: hello?.nodeID)
            if let hello { emit(state.peers.linkDown(hello.nodeID).events) }
            return redial
        }
        guard let hello else { return }
        logger.debug("direct link closed", metadata: ["peer.id": "\(hello.nodeID)"])
        // After a refusal, the redial fails at once (the backoff in link(to:)): the peer is down.
        if redial { await self.redial(hello.nodeID) }
    }

    /// After the last link to a peer closed: one quick attempt (``Configuration/redialTimeout``
    /// per address) to open a new one; failing that, the peer is down, whatever discovery still
    /// says.
    private func redial(_ peer: NodeID) async {
        let addresses = await candidateAddresses(of: peer)
        if !addresses.isEmpty {
            do {
                _ = try await link(to: peer, addresses: addresses, timeout: configuration.redialTimeout)
                return
            } catch {
                logger.debug("redial failed", metadata: ["peer.id": "\(peer)", "error": "\(error)"])
            }
        }
        state.withLock { state in
            guard !state.links.isLinked(peer) else { return }
            emit(state.peers.redialFailed(peer))
        }
    }

    /// Where `peer` may accept links: discovery's addresses, then the server's, then (with
    /// `cached`) the last ones the node cache remembers, for when neither discovery nor the
    /// server can tell.
    func candidateAddresses(of peer: NodeID, cached: Bool = false) async -> [String] {
        var addresses = state.withLock { state in
            let addresses = state.peers.addresses(of: peer)
            return addresses + state.server.addresses(of: peer).filter { !addresses.contains($0) }
        }
        if cached {
            do {
                let remembered = try await registry.run { registry throws(ParleyError) in
                    try registry.node(peer)?.addresses ?? []
                }
                addresses += remembered.filter { !addresses.contains($0) }
            } catch {
                logger.debug("cannot read the cached node", metadata: ["peer.id": "\(peer)", "error": "\(error)"])
            }
        }
        return addresses
    }

    private func handle(_ frame: Frame, on link: DirectLink) async {
        switch frame.type {
        case .nodeHello:
            await handleHello(frame, on: link)
        case .peerMessage:
            await handleMessage(frame, on: link)
        case .peerCommand:
            handleCommand(frame, on: link)
        // Direct file transfers (ParleyNode+DirectFiles.swift).
        case .peerTransferStart, .peerTransferChunk, .peerTransferEnd, .peerTransferClose:
            handleTransfer(frame, on: link)
        // Answers to this node's requests never get here: DirectLinkHandler completes them.
        case .error:
            let error = ParleyError(errorFrame: frame)
            // A refusal (not a timeout nor a shutdown) makes this node wait before dialling again.
            var refusal: Refusal?
            if ![ParleyError.Code.idleTimeout, .shuttingDown].contains(error.code),
                let peer = link.authenticated?.peer
            {
                refusal = noteRefusal(of: peer, error, byPeer: true)
                eventQueue.offer(.linkRefused(peer, error, byPeer: true))
            }
            // A refusal is rare and worth seeing; a timeout or a shutdown is routine.
            logger.log(
                level: refusal == nil ? .debug : .info,
                "the peer closed the direct link",
                metadata: [
                    "peer.id": "\(link.authenticated?.peer.description ?? "?")", "error": "\(error)",
                    "redial.after": "\(refusal.map { "\($0.delay)" } ?? "-")",
                ]
            )
            link.fail(error)
        default:
            if !frame.type.isResponse, frame.requestID != 0 {
                link.write(
                    .error(
                        ParleyError(code: .unknownRequest, message: "unknown frame type \(frame.type)"),
                        requestID: frame.requestID)
                )
            }
        }
    }

    /// Remembers a refused link (by the peer, or by this node): the peer is not dialled again
    /// before a backoff, longer after each refusal, so neither side redials in a tight loop.
    @discardableResult
    private func noteRefusal(of peer: NodeID, _ error: ParleyError, byPeer: Bool) -> Refusal {
        state.withLock { $0.links.refused(peer, error, byPeer: byPeer, now: .now) }
    }

    private func handleHello(_ frame: Frame, on link: DirectLink) async {
        guard let peer = link.authenticated, link.hello == nil else {
            link.refuse(ParleyError(code: .protocolViolation, message: "NODE_HELLO out of place"))
            return
        }
        do throws(ParleyError) {
            let meta: Parley_V1_NodeHello = try frame.decodeMeta()
            guard NodeID(meta.nodeID) == peer.peer else {
                throw ParleyError(
                    code: .protocolViolation,
                    message: "NODE_HELLO names node \(meta.nodeID), but the TLS handshake proved \(peer.peer)"
                )
            }
            let user = meta.userID == 0 ? nil : UserID(meta.userID)
            if let user {
                // Ask the server first, if it can be asked: a key it vouches for beats one pinned on
                // first use, and must not be pre-empted by an impostor's pin.
                let vouched = try await registry.run { registry throws(ParleyError) in
                    try registry.vouchedKey(forUser: user)
                }
                if vouched == nil { await refreshServerNode(of: user) }
                do throws(ParleyError) {
                    try await verifyClaim(user, by: peer)
                } catch  where error.code == .pinnedKeyMismatch && state.withLock({ $0.server.loggedOn }) {
                    // The user may have moved to a new key that the server vouches for since this
                    // node last asked: ask again before calling the peer an impostor.
                    await refreshServerNode(of: user, force: true)
                    try await verifyClaim(user, by: peer)
                }
            }
            let name = String(meta.userName.prefix(UserInfo.maximumFieldLength))
            recordPeer(peer, user: user, name: name)
            let hello = VerifiedHello(
                nodeID: peer.peer,
                publicKeyDER: peer.publicKeyDER,
                userID: user,
                userName: name,
                server: meta.server
            )
            link.markReady(hello)
            state.withLock { state in
                state.links.linkReady(link, peer: peer.peer)
                emit(state.peers.linkUp(peer.peer, user: user, name: name))
            }
            logger.debug(
                "direct link up", metadata: ["peer.id": "\(peer.peer)", "user.id": "\(user?.description ?? "-")"])
            flushSignal.signal()
        } catch {
            logger.info(
                "refusing a direct link",
                metadata: ["peer.id": "\(peer.peer)", "error": "\(error)"]
            )
            eventQueue.offer(.linkRefused(peer.peer, error, byPeer: false))
            // This node does not dial a peer it refuses either, for a while.
            if error.code == .pinnedKeyMismatch { noteRefusal(of: peer.peer, error, byPeer: false) }
            link.refuse(error)
        }
    }

    /// Checks that `peer` may speak for `user`: its key must be the one the server vouched for
    /// that user, or, without a vouched key, the one pinned for that user on first use (one unit
    /// on the registry's queue: the check and the pin cannot interleave with another claim's).
    private func verifyClaim(_ user: UserID, by peer: LinkAuthenticated) async throws(ParleyError) {
        try await registry.run { registry throws(ParleyError) in try Self.verifyClaim(user, by: peer, in: registry) }
    }

    private static func verifyClaim(_ user: UserID, by peer: LinkAuthenticated, in registry: NodeRegistry)
        throws(ParleyError)
    {
        if let vouched = try registry.vouchedKey(forUser: user) {
            guard vouched.publicKey == peer.publicKeyDER else {
                throw ParleyError(
                    code: .pinnedKeyMismatch,
                    message: """
                        another node claims user \(user): node \(peer.peer) (\(NodeRegistry.fingerprint(of: peer.publicKeyDER))), \
                        but the server vouches for node \(vouched.nodeID) (\(NodeRegistry.fingerprint(of: vouched.publicKey))) \
                        for that user; refusing
                        """
                )
            }
            try registry.checkKey(
                forUser: user,
                nodeID: peer.peer,
                publicKey: peer.publicKeyDER,
                vouchedByServer: true,
                now: Date()
            )
        } else {
            try registry.checkKey(
                forUser: user,
                nodeID: peer.peer,
                publicKey: peer.publicKeyDER,
                vouchedByServer: false,
                now: Date()
            )
        }
    }

    private func recordPeer(_ peer: LinkAuthenticated, user: UserID?, name: String) {
        // Where discovery shows it now: the cache keeps it reachable when discovery is not there.
        let addresses = state.withLock { $0.peers.addresses(of: peer.peer) }.prefix(NodeRegistry.maximumAddressCount)
        let logger = self.logger
        registry.submit { registry throws(ParleyError) in
            try registry.record(
                node: peer.peer,
                publicKey: peer.publicKeyDER,
                userID: user,
                userName: name.isEmpty ? nil : name,
                addresses: Array(addresses),
                source: .peer,
                seenAt: Date()
            )
            if let user, !name.isEmpty {
                try registry.record(
                    user: UserInfo(userID: user, userName: name),
                    nodeID: peer.peer,
                    source: .peer,
                    seenAt: Date()
                )
            }
        } failed: { error in
            logger.debug("cannot cache the peer", metadata: ["peer.id": "\(peer.peer)", "error": "\(error)"])
        }
    }

    /// Answers PEER_MESSAGE_OK once the message is stored (``deliver(_:sender:from:route:)``).
    private func handleMessage(_ frame: Frame, on link: DirectLink) async {
        guard let hello = link.hello else {
            link.write(
                .error(ParleyError(code: .handshakeRequired, message: "NODE_HELLO first"), requestID: frame.requestID)
            )
            return
        }
        do throws(ParleyError) {
            let meta: Parley_V1_PeerMessage = try frame.decodeMeta()
            let bytes = Array(frame.payload.readableBytesView)
            let body: MessageBody
            switch meta.kind {
            case .binary:
                body = .binary(bytes)
            default:
                guard let text = String(validating: bytes, as: UTF8.self) else {
                    throw ParleyError(code: .invalidUTF8, message: "the text message is not valid UTF-8")
                }
                body = .text(text)
            }
            let message = Message(
                id: MessageID(meta.messageID),
                sender: hello.userID ?? UserID(0),
                recipients: meta.recipients.map(UserID.init(rawValue:)),
                body: body,
                sentAt: Date(timeIntervalSince1970: Double(meta.sentAtMs) / 1000),
                deliveredAt: Date()
            )
            let sender = hello.userID.map(MessageOrigin.user) ?? .node(hello.nodeID)
            try await deliver(message, sender: sender, from: hello.nodeID, route: .direct)
            link.write(
                Frame(type: FrameType.peerMessage.response, requestID: frame.requestID, message: Parley_V1_Empty()))
        } catch {
            link.write(.error(error, requestID: frame.requestID))
        }
    }

    // MARK: Discovery

    func runDiscovery(_ discovery: any Discovery, port: Int) async {
        var record = ServiceRecord(
            instanceName: Self.instanceName(configuration.name, nodeID: nodeID),
            port: UInt16(clamping: port),
            nodeID: nodeID,
            userID: ownUser?.rawValue,
            userName: configuration.name.isEmpty ? nil : String(configuration.name.prefix(UserInfo.maximumFieldLength)),
            server: configuration.server.map { Self.address(host: $0.host, port: $0.port) },
            status: nil  // set below, under the lock that records what is advertised
        )
        do {
            try record.validate()
        } catch {
            logger.warning(
                "the discovery record is invalid; advertising without a user name", metadata: ["error": "\(error)"])
            record.userName = nil
        }
        do {
            // Recorded first, so a status set meanwhile is either in `record` or updates it.
            record = state.withLock { state in
                record.status = state.status
                state.advertised = record
                return record
            }
            try await discovery.advertise(record)
            // A status set while the first advertisement was on its way could not update it.
            let latest = state.withLock { $0.advertised }
            if let latest, latest.status != record.status { try await discovery.update(latest) }
        } catch {
            logger.warning("cannot advertise the node", metadata: ["error": "\(error)"])
        }
        for await event in discovery.peerEvents {
            handleDiscovery(event)
        }
    }

    static func instanceName(_ name: String, nodeID: NodeID) -> String {
        var instance = name.isEmpty ? "parley-\(nodeID.description.prefix(8))" : name
        while instance.utf8.count > ServiceRecord.maximumInstanceNameLength { instance.removeLast() }
        return instance
    }

    private func handleDiscovery(_ event: PeerEvent) {
        let peerID = event.nodeID
        guard peerID != nodeID else { return }
        switch event {
        case .up(let peer), .changed(let peer):
            let isNew: Bool
            if case .up = event { isNew = true } else { isNew = false }
            // The lower node ID opens the standing link (liveness); the other side waits for it.
            let opensLink = nodeID < peerID && configuration.allowsDirectLinks
            state.withLock { state in
                // What discovery shows changed (or is new): dialling the peer may work now.
                state.links.discovered(peerID, openLink: opensLink)
                emit(state.peers.advertised(peer, as: peerID, isNew: isNew))
            }
            let logger = self.logger
            registry.submit { registry throws(ParleyError) in
                if let user = peer.userID, let name = peer.userName, !name.isEmpty {
                    try registry.record(
                        user: UserInfo(userID: UserID(user), userName: name),
                        nodeID: peerID,
                        source: .discovery,
                        seenAt: Date()
                    )
                }
                // A node met before (its key is cached): remember where it is now.
                if let known = try registry.node(peerID), !peer.addresses.isEmpty {
                    try registry.record(
                        node: peerID,
                        publicKey: known.publicKey,
                        userID: nil,
                        userName: nil,
                        addresses: Array(
                            peer.addresses.map(\.description).prefix(NodeRegistry.maximumAddressCount)),
                        source: .discovery,
                        seenAt: Date()
                    )
                }
            } failed: { error in
                logger.debug("cannot cache a discovered peer", metadata: ["peer.id": "\(peerID)", "error": "\(error)"])
            }
            // The flusher opens the standing link, if one was asked for, and retries the outbox.
            flushSignal.signal()
        case .down:
            state.withLock { state in emit(state.peers.withdrawn(peerID)) }
        }
    }

}
