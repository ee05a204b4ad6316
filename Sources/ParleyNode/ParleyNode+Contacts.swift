import Foundation
import ParleyClient
public import ParleyCore
import ParleyNodeStore

/// Contacts and presence on a node (docs/PROTOCOL.md section 23): the list lives on the server
/// and is cached in the registry; presence comes from the server while the node is logged on,
/// and from the LAN (advertisements and link liveness) otherwise, one state either way.
extension ParleyNode {
    /// The contact list: the server's when it can be asked (the cache is refreshed with it),
    /// else the cached one (`cached` true).
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` when the server refuses, or the cache cannot be read.
    public func contacts() async throws(ParleyError) -> CachedAnswer<[Contact]> {
        if let client = loggedOnClient {
            do throws(ParleyError) {
                let contacts = try await client.contacts().contacts
                cacheContacts(contacts)
                return CachedAnswer(contacts, isCached: false)
            } catch {
                guard error.meansServerUnavailable else { throw error }
            }
        }
        return CachedAnswer(
            try await registry.run { registry throws(ParleyError) in try registry.cachedContacts() }, isCached: true)
    }

    /// Adds `user` to the contact list on the server (and in the cache), or changes how an
    /// existing entry's name is shown.
    ///
    /// - Throws: ``/ParleyCore/ParleyError``: `notConnected` while the server is unreachable (the
    ///   cached list cannot be changed), or the server's refusal (`userNotFound`,
    ///   `tooManyContacts`, `contactRefused`).
    @discardableResult
    public func addContact(_ user: UserID, displayName: ContactDisplayName = .userName) async throws(ParleyError)
        -> Contact
    {
        let contact = try await requireServer().addContact(user, displayName: displayName)
        cacheContact(contact)
        return contact
    }

    /// Changes how a contact's name is shown, on the server and in the cache.
    ///
    /// - Throws: ``/ParleyCore/ParleyError``: `notConnected` while the server is unreachable,
    ///   `contactNotFound` when `user` is not in the list.
    @discardableResult
    public func updateContact(_ user: UserID, displayName: ContactDisplayName) async throws(ParleyError) -> Contact {
        let contact = try await requireServer().updateContact(user, displayName: displayName)
        cacheContact(contact)
        return contact
    }

    /// Removes `user` from the contact list, on the server and in the cache.
    ///
    /// - Throws: ``/ParleyCore/ParleyError``: `notConnected` while the server is unreachable,
    ///   `contactNotFound` when `user` is not in the list.
    public func removeContact(_ user: UserID) async throws(ParleyError) {
        try await requireServer().removeContact(user)
        let logger = self.logger
        registry.submit { registry throws(ParleyError) in
            try registry.removeCachedContact(user)
        } failed: { error in
            logger.warning("cannot update the contact cache", metadata: ["error": "\(error)"])
        }
        perform(state.withLock { state in state.server.contactRemoved(user, lanPeers: state.peers.peers) })
    }

    /// The presence of each contact (of the cached list): the server's while this node is logged
    /// on and the server has told it (``/ParleyCore/Presence/Source/server``), otherwise derived
    /// from the LAN (``/ParleyCore/Presence/Source/lan``): online, away or busy as a node of the
    /// user advertises while it is reachable, offline when none is.
    public func contactPresences() -> [UserID: Presence] {
        state.withLock { state in state.server.contactPresences(lanPeers: state.peers.peers) }
    }

    /// Sets the presence of this node's user, one state for everyone: advertised on the LAN
    /// (peers see it in ``PeerInfo/status``: the state, then ": " and the text, cut to
    /// ``maximumStatusLength`` bytes) and set on the server (its contacts see it there; set
    /// again at each logon while the server was unreachable).
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidPresence` for `offline` (a user is
    ///   offline by stopping the node) or an invalid text; the server's refusal.
    public func setPresence(_ presence: PresenceState, text: String = "") async throws(ParleyError) {
        try Presence.validateChoice(state: presence, text: text)
        state.withLock { $0.server.chose(Presence(state: presence, text: text)) }
        try await setStatus(Self.status(for: presence, text: text))
        if let client = loggedOnClient {
            do throws(ParleyError) {
                try await client.setPresence(presence, text: text)
            } catch {
                // Not logged on after all: the next logon sends it.
                guard error.meansServerUnavailable else { throw error }
            }
        }
    }

    // MARK: Internals

    /// The client, while it is logged on.
    var loggedOnClient: ParleyClient? {
        state.withLock { $0.server.loggedOnClient }
    }

    private func requireServer() throws(ParleyError) -> ParleyClient {
        guard let client = loggedOnClient else {
            throw ParleyError(
                code: .notConnected,
                message:
                    "the contact list is changed on the server, which is not reachable now; the cached list is read-only"
            )
        }
        return client
    }

    private func cacheContacts(_ contacts: [Contact]) {
        storeCachedContacts(contacts)
        let users = contacts.map(\.userID)
        perform(state.withLock { state in state.server.contactsReplaced(users, lanPeers: state.peers.peers) })
    }

    /// Replaces the registry's cached list; a failure is logged (the server still has the list).
    private func storeCachedContacts(_ contacts: [Contact]) {
        let logger = self.logger
        registry.submit { registry throws(ParleyError) in
            try registry.replaceCachedContacts(contacts)
        } failed: {
            error in
            logger.warning("cannot cache the contact list", metadata: ["error": "\(error)"])
        }
    }

    private func cacheContact(_ contact: Contact) {
        let logger = self.logger
        registry.submit { registry throws(ParleyError) in
            try registry.cacheContact(contact)
        } failed: { error in
            logger.warning("cannot cache a contact", metadata: ["error": "\(error)"])
        }
        perform(state.withLock { state in state.server.contactAdded(contact.userID, lanPeers: state.peers.peers) })
    }

    /// A PRESENCE event from the server: the snapshot after logon (with the list) or a change.
    func receivedServerPresence(_ update: PresenceUpdate) {
        if let contacts = update.contacts { storeCachedContacts(contacts) }
        let actions = state.withLock { state in
            state.server.presenceReceived(
                contacts: update.contacts?.map(\.userID),
                presences: update.presences,
                isSnapshot: update.isSnapshot,
                lanPeers: state.peers.peers
            )
        }
        perform(actions)
    }

    /// Carries out what the server session decided.
    func perform(_ actions: [ServerSession<ParleyClient>.Action]) {
        for action in actions {
            switch action {
            case .report(let user, let presence):
                eventQueue.offer(.contactPresence(user, presence))
            case .flushOutbox:
                flushSignal.signal()
            case .setPresence(let client, let chosen):
                Task {
                    do throws(ParleyError) {
                        try await client.setPresence(chosen.state, text: chosen.text)
                    } catch {
                        logger.debug("cannot set the presence on the server", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }

    /// Reports each contact whose presence changed since the last report
    /// (``Event/contactPresence(_:_:)``).
    func publishContactPresence() {
        perform(state.withLock { state in state.server.reportChanges(lanPeers: state.peers.peers) })
    }

    /// What the LAN says about `user`: the advertised status of a reachable node of the user.
    static func lanPresence(of user: UserID, peers: [PeerInfo]) -> Presence {
        guard let peer = peers.first(where: { $0.userID == user && $0.online && $0.status != "offline" }) else {
            return Presence(state: .offline, source: .lan)
        }
        var presence = presence(fromStatus: peer.status)
        presence.source = .lan
        return presence
    }

    /// The LAN status string for a presence: "away", or "away: at lunch" (cut to fit
    /// ``maximumStatusLength``).
    public static func status(for presence: PresenceState, text: String) -> String {
        var status = text.isEmpty ? presence.rawValue : "\(presence.rawValue): \(text)"
        while status.utf8.count > maximumStatusLength { status.removeLast() }
        return status
    }

    /// Reads a LAN status (``PeerInfo/status``): "online", "away", "busy", optionally followed by
    /// ": text"; any other status (a free text from an older node) is online with that text.
    public static func presence(fromStatus status: String) -> Presence {
        let parts = status.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        if let first = parts.first, let state = PresenceState(rawValue: first), state != .offline {
            return Presence(state: state, text: parts.count > 1 ? parts[1] : "")
        }
        return Presence(state: .online, text: status)
    }
}
