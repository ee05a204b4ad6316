import ParleyCore

/// The node's session with the central server as the node sees it: the client, whether it is
/// logged on or was kicked, what the server said about users' nodes, and the contacts' presence
/// (the server's while it is logged on and has sent its snapshot, else the LAN's).
///
/// Pure state, generic over the client so that tests need no server: the node calls these methods
/// under its state lock, with the LAN's peers and the time as parameters, and carries out the
/// ``Action``s they return after releasing it.
struct ServerSession<Client: AnyObject & Sendable>: Sendable {
    /// What the node does after a change.
    enum Action {
        /// Sets the presence the user chose on the server (after a logon).
        case setPresence(Client, Presence)
        /// A route to the server exists again: the outbox is flushed.
        case flushOutbox
        /// Reports a contact's changed presence (``ParleyNode/Event/contactPresence(_:_:)``).
        case report(UserID, Presence)
    }

    /// The client of the current connection attempt, logged on or not.
    private(set) var client: Client?
    private(set) var loggedOn = false
    /// An admin kicked this node's server session (KICKED): the node does not connect to the
    /// server again until it is restarted; direct links go on.
    private(set) var kicked = false
    /// What the server said about users' nodes (for direct links), by user.
    private(set) var nodes: [UserID: ParleyNode.ServerNode] = [:]
    /// The user's contacts (the cached list, read at start); nil when it could not be read.
    private(set) var contacts: Set<UserID>?
    /// The presence the user chose (``ParleyNode/setPresence(_:text:)``), set on the server at each logon.
    private(set) var chosenPresence: Presence?
    /// Contacts' presence as the server pushed it during this logon.
    private var serverPresences: [UserID: Presence] = [:]
    /// Whether the server's presence snapshot came during this logon.
    private var serverPresenceKnown = false
    /// What was reported last, by contact.
    private var reported: [UserID: Presence] = [:]

    /// The client, while it is logged on.
    var loggedOnClient: Client? { loggedOn ? client : nil }

    /// The contact list cached by the last run, before the server answers; reported by the
    /// first ``reportChanges(lanPeers:)``.
    mutating func loadCachedContacts(_ list: [UserID]) {
        contacts = Set(list)
    }

    /// A new client starts connecting.
    mutating func clientStarted(_ client: Client) {
        self.client = client
    }

    /// The client stopped (it gave up, or the node stops).
    mutating func clientStopped() {
        client = nil
        loggedOn = false
    }

    /// The connection state changed: logged on (`loggedOn`), or not, and whether an admin
    /// kicked the session. A logon flushes the outbox and sets the chosen presence; the
    /// contacts' presence switches between the server and the LAN.
    mutating func connectionChanged(loggedOn: Bool, kicked: Bool, lanPeers: [ParleyNode.PeerInfo]) -> [Action] {
        self.loggedOn = loggedOn
        if kicked { self.kicked = true }
        if !loggedOn {
            serverPresenceKnown = false
            serverPresences = [:]
        }
        var actions = reportChanges(lanPeers: lanPeers)
        guard loggedOn else { return actions }
        actions.append(.flushOutbox)
        if let client, let chosenPresence { actions.append(.setPresence(client, chosenPresence)) }
        return actions
    }

    /// A PRESENCE event from the server: the snapshot after logon (with the list) or a change.
    mutating func presenceReceived(
        contacts list: [UserID]?,
        presences: [UserID: Presence],
        isSnapshot: Bool,
        lanPeers: [ParleyNode.PeerInfo]
    ) -> [Action] {
        if let list {
            contacts = Set(list)
            serverPresences = [:]
        }
        serverPresences.merge(presences) { $1 }
        if isSnapshot { serverPresenceKnown = true }
        return reportChanges(lanPeers: lanPeers)
    }

    /// The contact list is now `list` (the server's answer, or the cache).
    mutating func contactsReplaced(_ list: [UserID], lanPeers: [ParleyNode.PeerInfo]) -> [Action] {
        contacts = Set(list)
        return reportChanges(lanPeers: lanPeers)
    }

    /// `user` was added to the contact list (or its entry changed).
    mutating func contactAdded(_ user: UserID, lanPeers: [ParleyNode.PeerInfo]) -> [Action] {
        contacts?.insert(user)
        return reportChanges(lanPeers: lanPeers)
    }

    /// `user` left the contact list.
    mutating func contactRemoved(_ user: UserID, lanPeers: [ParleyNode.PeerInfo]) -> [Action] {
        contacts?.remove(user)
        serverPresences[user] = nil
        return reportChanges(lanPeers: lanPeers)
    }

    /// The user chose a presence: it is set on the server at each logon from now on.
    mutating func chose(_ presence: Presence) {
        chosenPresence = presence
    }

    /// The presence of each contact: the server's while logged on and the server has sent its
    /// snapshot, otherwise derived from the LAN.
    func contactPresences(lanPeers: [ParleyNode.PeerInfo]) -> [UserID: Presence] {
        guard let contacts else { return [:] }
        let fromServer = loggedOn && serverPresenceKnown
        var presences: [UserID: Presence] = [:]
        for user in contacts {
            presences[user] =
                fromServer ? serverPresences[user] ?? .offline : ParleyNode.lanPresence(of: user, peers: lanPeers)
        }
        return presences
    }

    /// Reports each contact whose presence changed since the last report (the state, text or
    /// source; not the time), in user order.
    mutating func reportChanges(lanPeers: [ParleyNode.PeerInfo]) -> [Action] {
        let current = contactPresences(lanPeers: lanPeers)
        var actions: [Action] = []
        for (user, presence) in current.sorted(by: { $0.key < $1.key }) where Self.differs(reported[user], presence) {
            actions.append(.report(user, presence))
        }
        reported = current
        return actions
    }

    private static func differs(_ old: Presence?, _ new: Presence) -> Bool {
        guard let old else { return true }
        return old.state != new.state || old.text != new.text || old.source != new.source
    }

    /// The server told what `user`'s node is.
    mutating func learned(_ node: ParleyNode.ServerNode, of user: UserID) {
        nodes[user] = node
    }

    /// The client to ask about `user`'s node: nil when not logged on, or (without `force`) when
    /// the server was asked less than 30 s ago.
    func clientToAsk(about user: UserID, force: Bool, now: ContinuousClock.Instant) -> Client? {
        guard let client = loggedOnClient else { return nil }
        if !force, let known = nodes[user], known.fetchedAt.duration(to: now) < .seconds(30) { return nil }
        return client
    }

    /// The addresses the server gave for `peer`, while its user is logged on and allows direct links.
    func addresses(of peer: ParleyNode.NodeID) -> [String] {
        var addresses: [String] = []
        for node in nodes.values where node.nodeID == peer && node.allowsDirectLinks && node.isOnline {
            addresses += node.addresses.filter { !addresses.contains($0) }
        }
        return addresses
    }
}
