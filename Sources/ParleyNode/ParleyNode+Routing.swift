import Foundation
import ParleyClient
public import ParleyCore
import ParleyNodeStore
import ParleyWire

extension ParleyNode {
    /// Sends a message by the best route: direct, the server, or the durable outbox.
    ///
    /// Returns once the message is safe: acknowledged by the peer (``Route/direct``), stored by
    /// the server (``Route/server``), or stored in the local outbox (``Route/queued``), from which
    /// it leaves, in order and with the same ID, as soon as a route exists. Earlier messages to
    /// the same recipient that still wait in the outbox leave first (now, if a route exists);
    /// if they cannot, this one is queued behind them, so it cannot overtake them. Messages to
    /// other recipients do not wait for this one.
    ///
    /// - Parameters:
    ///   - body: The message's text or bytes.
    ///   - recipient: A user (all routes) or a node (direct links and the outbox only).
    ///   - id: The message ID; pass the same ID to resend a message without duplicating it.
    /// - Throws: ``/ParleyCore/ParleyError`` when the server refused the message for good (for
    ///   instance ``/ParleyCore/ParleyError/Code/recipientNotFound``) or the outbox cannot store it.
    public func send(
        _ body: MessageBody,
        to recipient: Recipient,
        id: MessageID = .random()
    ) async throws(ParleyError) -> SendResult {
        let route = try await sendLocks.withLock(recipient) { () async throws(ParleyError) -> Route in
            let stillQueued = try await flushQueue(of: recipient)
            return try await self.route(
                body, to: recipient, id: id, createdAt: Date(), mode: .new(behindQueued: stillQueued))
        }
        noteRoute(route, for: recipient)
        recordSent(body, to: recipient, id: id, sentAt: Date(), route: route)  // history: sent
        return SendResult(messageID: id, route: route)
    }

    private func noteRoute(_ route: Route, for recipient: Recipient) {
        // Offered under the lock: two sends to one recipient report their routes in order.
        state.withLock { state in
            if state.routes.note(route, for: recipient) { eventQueue.offer(.routeChanged(recipient, route)) }
        }
    }

    /// Where a direct message to `recipient` would go: the peer's node and its addresses.
    func directTarget(for recipient: Recipient) async -> (node: NodeID, addresses: [String], linked: Bool)? {
        switch recipient {
        case .node(let node):
            let (linked, addresses) = state.withLock { ($0.peers.isLinked(node), $0.peers.addresses(of: node)) }
            let all = addresses.isEmpty ? await candidateAddresses(of: node, cached: true) : addresses
            return linked || !all.isEmpty ? (node, all, linked) : nil
        case .user(let user):
            guard configuration.allowsDirectLinks else { return nil }
            await refreshServerNode(of: user)
            if let known = state.withLock({ $0.server.nodes[user] }) {
                // The server vouches for the user's node: only that node gets the message directly,
                // at the addresses the server knows (if the user is logged on) or the LAN shows.
                guard known.allowsDirectLinks, known.nodeID != nodeID else { return nil }
                let linked = state.withLock { $0.peers.isLinked(known.nodeID) }
                let addresses = await candidateAddresses(of: known.nodeID)
                return linked || !addresses.isEmpty ? (known.nodeID, addresses, linked) : nil
            }
            // Only the LAN knows the user's node, or, while the server cannot be asked, the node
            // cache; the link's NODE_HELLO check decides (the key the server vouched for in an
            // earlier run, else the pinned one).
            let serverAway = !state.withLock { $0.server.loggedOn }
            var lanNode = state.withLock { $0.peers.node(ofUser: user) }
            if lanNode == nil, serverAway {
                do {
                    lanNode = try await registry.run { registry throws(ParleyError) in
                        try registry.cachedUser(user)?.nodeID
                    }
                } catch {
                    logger.debug("cannot read the cached user", metadata: ["user.id": "\(user)", "error": "\(error)"])
                }
            }
            guard let node = lanNode, node != nodeID else { return nil }
            do {
                let vouched = try await registry.run { registry throws(ParleyError) in
                    try registry.vouchedKey(forUser: user)
                }
                if let vouched, vouched.nodeID != node { return nil }
            } catch {
                logger.warning("cannot read the vouched key", metadata: ["user.id": "\(user)", "error": "\(error)"])
                return nil
            }
            let addresses = await candidateAddresses(of: node, cached: serverAway)
            let linked = state.withLock { $0.peers.isLinked(node) }
            return linked || !addresses.isEmpty ? (node, addresses, linked) : nil
        }
    }

    /// Whether a message is new (and must wait behind queued ones) or leaves the outbox.
    enum RoutingMode {
        case new(behindQueued: Bool)
        case flush
    }

    /// Routes one message; the caller holds the recipient's lock in ``sendLocks``. In
    /// ``RoutingMode/flush`` mode, `.queued` means "still waiting" and nothing is enqueued again.
    func route(
        _ body: MessageBody,
        to recipient: Recipient,
        id: MessageID,
        createdAt: Date,
        mode: RoutingMode
    ) async throws(ParleyError) -> Route {
        let fromOutbox: Bool
        let hasQueued: Bool
        switch mode {
        case .new(let behindQueued): (fromOutbox, hasQueued) = (false, behindQueued)
        case .flush: (fromOutbox, hasQueued) = (true, false)
        }
        let target = await directTarget(for: recipient)
        let situation = RouteSituation(
            recipientIsNode: { if case .node = recipient { true } else { false } }(),
            hasQueuedMessages: hasQueued,
            direct: target.map { $0.linked ? .linked : .dialable } ?? .unavailable,
            directAllowed: configuration.allowsDirectLinks,
            serverLoggedOn: state.withLock { $0.server.loggedOn }
        )
        let plan = fromOutbox ? RoutePlanner.planFlush(situation) : RoutePlanner.plan(situation)
        for step in plan {
            switch step {
            case .direct:
                guard let target else { continue }
                do {
                    // Messages that went through the server and may not have arrived yet go
                    // direct first (the recipient drops copies), or this one would overtake them.
                    if case .user(let user) = recipient {
                        try await resendAwaitingReceipts(to: user, target: target)
                    }
                    try await sendDirect(body, to: recipient, target: target, id: id, createdAt: createdAt)
                    return .direct
                } catch {
                    logger.debug(
                        "direct send failed, falling back",
                        metadata: ["peer.id": "\(target.node)", "message.id": "\(id)", "error": "\(error)"]
                    )
                }
            case .server:
                guard case .user(let user) = recipient, let client = state.withLock({ $0.server.client }) else {
                    continue
                }
                // Remembered before it leaves: its receipt may come back before the answer does.
                let sender = ownUser ?? UserID(0)
                try await registry.run { registry throws(ParleyError) in
                    try registry.awaitReceipt(
                        recipient: user, messageID: id, sender: sender, isText: body.isText, body: body.bytes,
                        createdAt: createdAt)
                }
                do throws(ParleyError) {
                    let results = try await client.send(body, to: [user], id: id, wantReceipt: true, sentAt: createdAt)
                    if let failed = results.first(where: { !$0.isAccepted }), case .failed(let error) = failed.status {
                        throw error
                    }
                    return .server
                } catch {
                    // Not sent (or not known to be): it leaves by another route, with the same ID.
                    try await registry.run { registry throws(ParleyError) in
                        try registry.confirmReceipt(recipient: user, messageID: id)
                    }
                    guard error.meansServerUnavailable else { throw error }
                    logger.debug(
                        "sending through the server failed", metadata: ["message.id": "\(id)", "error": "\(error)"])
                }
            case .queued:
                try await enqueue(body, to: recipient, id: id, createdAt: createdAt)
                return .queued
            }
        }
        return .queued
    }

    private func enqueue(_ body: MessageBody, to recipient: Recipient, id: MessageID, createdAt: Date)
        async throws(ParleyError)
    {
        let sender = ownUser ?? UserID(0)
        try await registry.run { registry throws(ParleyError) in
            switch recipient {
            case .node(let node):
                try registry.enqueue(
                    forNode: node,
                    messageID: id,
                    sender: sender,
                    isText: body.isText,
                    body: body.bytes,
                    createdAt: createdAt
                )
            case .user(let user):
                try registry.enqueue(
                    OutboxMessage(
                        messageID: id,
                        sender: sender,
                        recipients: [user],
                        isText: body.isText,
                        body: body.bytes,
                        createdAt: createdAt
                    )
                )
            }
        }
        logger.debug("message queued", metadata: ["message.id": "\(id)", "recipient": "\(recipient)"])
    }

    /// Sends `user` directly, in order, the messages that went to it through the server and
    /// whose delivery receipts have not come; each one acknowledged is forgotten.
    ///
    /// - Throws: the first direct send's failure (the caller must not go direct then).
    private func resendAwaitingReceipts(
        to user: UserID,
        target: (node: NodeID, addresses: [String], linked: Bool)
    ) async throws(ParleyError) {
        while true {
            let waiting = try await registry.run { registry throws(ParleyError) in
                try registry.awaitingReceipts(for: user, limit: 64)
            }
            if waiting.isEmpty { return }
            for entry in waiting {
                let body = MessageBody(isText: entry.isText, bytes: entry.body)
                try await sendDirect(
                    body, to: .user(user), target: target, id: entry.messageID, createdAt: entry.createdAt)
                try await registry.run { registry throws(ParleyError) in
                    try registry.confirmReceipt(recipient: user, messageID: entry.messageID)
                }
                logger.debug(
                    "a message sent through the server was also sent directly, to keep the order",
                    metadata: ["message.id": "\(entry.messageID)", "user.id": "\(user)"])
            }
        }
    }

    private func sendDirect(
        _ body: MessageBody,
        to recipient: Recipient,
        target: (node: NodeID, addresses: [String], linked: Bool),
        id: MessageID,
        createdAt: Date
    ) async throws(ParleyError) {
        var meta = Parley_V1_PeerMessage()
        meta.messageID = id.rawValue
        meta.sender = ownUser?.rawValue ?? 0
        if case .user(let user) = recipient { meta.recipients = [user.rawValue] }
        meta.kind = body.isText ? .text : .binary
        meta.sentAtMs = Int64((createdAt.timeIntervalSince1970 * 1000).rounded())
        // A second try only on a fresh link, when the first was closing as the message left (the
        // peer's end timed out, say). The same message ID, so the peer keeps one copy at most.
        for attempt in 1...2 {
            // A peer that failed lately is not waited for while the server can take the message.
            let purpose: DialPurpose =
                state.withLock { $0.server.loggedOn } ? .sendWithAlternative : .sendWithoutAlternative
            let directLink = try await link(to: target.node, addresses: target.addresses, purpose: purpose)
            if case .user(let user) = recipient, let hello = directLink.hello, hello.userID != user {
                throw ParleyError(
                    code: .recipientNotFound,
                    message: "node \(target.node) speaks for user \(hello.userID?.description ?? "none"), not \(user)"
                )
            }
            do {
                // A live peer answers at once; one silent for a peer timeout is as good as gone.
                try await directLink.request(meta, payload: body.bytes, timeout: configuration.peerTimeout)
                // The peer takes this node's messages: whatever it refused before is settled.
                state.withLock { $0.links.delivered(to: target.node) }
                return
            } catch {
                guard attempt == 1, error.code == .notConnected, !directLink.isOpen else { throw error }
            }
        }
    }

    // MARK: The outbox

    /// Flushes the outbox whenever a route may have appeared (signalled), and opens the standing
    /// links to discovered peers.
    func runFlusher() async {
        while await flushSignal.wait() {
            await openStandingLinks()
            await flushOutbox()
        }
    }

    private func openStandingLinks() async {
        let peers = state.withLock { $0.links.takePendingDials() }
        for peer in peers {
            do {
                _ = try await link(to: peer, addresses: await candidateAddresses(of: peer))
            } catch {
                logger.debug(
                    "cannot open a link to a discovered peer", metadata: ["peer.id": "\(peer)", "error": "\(error)"])
                state.withLock { state in emit(state.peers.redialFailed(peer)) }
            }
        }
    }

    /// Flushes every recipient's waiting messages, the recipients side by side (a peer whose
    /// dial times out holds up only its own messages).
    private func flushOutbox() async {
        let recipients: [Recipient]
        do throws(ParleyError) {
            let waiting = try await registry.run { registry throws(ParleyError) in try registry.outboxRecipients() }
            recipients = waiting.users.map { .user($0) } + waiting.nodes.map { .node($0) }
        } catch {
            logger.warning("reading the outbox failed", metadata: ["error": "\(error)"])
            return
        }
        // Side by side, but at most 16 at a time: a large outbox must not open hundreds of dials.
        await withTaskGroup(of: Void.self) { group in
            for (index, recipient) in recipients.enumerated() {
                if index >= 16 { await group.next() }
                group.addTask {
                    await self.sendLocks.withLock(recipient) { () async -> Void in
                        do throws(ParleyError) {
                            _ = try await self.flushQueue(of: recipient)
                        } catch {
                            self.logger.warning(
                                "flushing the outbox failed",
                                metadata: ["recipient": "\(recipient)", "error": "\(error)"])
                        }
                    }
                }
            }
        }
    }

    /// Sends the outbox entries for `recipient`, in order, until one finds no route; the caller
    /// holds the recipient's lock. An entry the server refuses for good (an unknown recipient,
    /// say) leaves the outbox with a ``Event/queuedMessageFailed(_:to:_:)`` event.
    ///
    /// - Returns: Whether messages for `recipient` still wait.
    func flushQueue(of recipient: Recipient) async throws(ParleyError) -> Bool {
        switch recipient {
        case .user(let user):
            while true {
                let entries = try await registry.run { registry throws(ParleyError) in
                    try registry.pending(for: user, limit: 64)
                }
                if entries.isEmpty { return false }
                for entry in entries {
                    let message = entry.message
                    let body = MessageBody(isText: message.isText, bytes: message.body)
                    let outcome: OutboxOutcome
                    var leftBy: Route?
                    do throws(ParleyError) {
                        let route = try await route(
                            body, to: recipient, id: message.messageID, createdAt: message.createdAt, mode: .flush)
                        guard let left = OutboxOutcome(route) else { return true }
                        outcome = left
                        leftBy = route
                    } catch {
                        // Storage errors are this node's trouble: the entry stays for the next flush.
                        if error.code == .storageError { throw error }
                        outcome = .failed(error.code)
                        emit([.queuedMessageFailed(message.messageID, to: recipient, error)])
                    }
                    try await registry.run { registry throws(ParleyError) in
                        try registry.markDelivered(
                            messageID: message.messageID,
                            sender: message.sender,
                            recipient: user,
                            route: outcome.description,
                            at: Date()
                        )
                    }
                    logger.debug(
                        "queued message left the outbox",
                        metadata: ["message.id": "\(message.messageID)", "outcome": "\(outcome)"])
                    // Told once the outbox no longer holds it.
                    if let leftBy {
                        noteRoute(leftBy, for: recipient)
                        // history: the queued message left by this route
                        recordSent(body, to: recipient, id: message.messageID, sentAt: message.createdAt, route: leftBy)
                    }
                }
            }
        case .node(let node):
            while true {
                let entries = try await registry.run { registry throws(ParleyError) in
                    try registry.pendingForNode(node, limit: 64)
                }
                if entries.isEmpty { return false }
                for entry in entries {
                    let body = MessageBody(isText: entry.isText, bytes: entry.body)
                    // Node messages go direct only: nothing can refuse them for good but the peer.
                    let route = try await route(
                        body, to: recipient, id: entry.messageID, createdAt: entry.createdAt, mode: .flush)
                    if route == .queued { return true }
                    try await registry.run { registry throws(ParleyError) in
                        try registry.markDeliveredToNode(sequence: entry.sequence)
                    }
                    logger.debug(
                        "queued message left the outbox",
                        metadata: ["message.id": "\(entry.messageID)", "outcome": "\(route)"])
                    noteRoute(route, for: recipient)
                }
            }
        }
    }
}
