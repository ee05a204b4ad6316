import Foundation
import ParleyCore
import ParleyServerStore
import ParleyWire

/// Contact lists and presence (docs/PROTOCOL.md section 23): GET_CONTACTS, ADD_CONTACT,
/// UPDATE_CONTACT, REMOVE_CONTACT, SET_PRESENCE, and this connection's PRESENCE events.
///
/// PRESENCE events reach a connection only if its HELLO negotiated the `presence` capability.
/// The first is the snapshot taken after logon (contact list and presences); changes that arrive
/// before it was pushed wait for it, and each contact's changes are applied in the hub's order
/// (``PresenceHub``), whatever thread announced them.
///
/// One instance serves every connection: what it keeps of a connection (the presence its logon
/// asked for, the order of its PRESENCE events) is the connection's ``PresenceWatch``, made only
/// when there is something to keep, so that a connection without PRESENCE events holds nothing.
final class ContactsFamily: RequestFamily, Sendable {
    private static let types: [FrameType] = [
        .getContacts, .addContact, .updateContact, .removeContact, .setPresence,
    ]

    var requestTypes: [FrameType] { Self.types }

    func handle(_ frame: Frame, in session: SessionContext) throws(ParleyError) {
        let user = try session.requireUser()
        switch frame.type {
        case .getContacts:
            session.query(frame) { server throws(ParleyError) in
                try Self.contactList(of: user, server)
            }
        case .addContact:
            let request: Parley_V1_ContactRequest = try frame.decodeMeta()
            let displayName = try request.displayName()
            let contact = UserID(request.userID)
            if session.server.hooks.vetoesContacts {
                askApplication(frame, contact: contact, owner: user, displayName: displayName, in: session)
            } else {
                add(frame, contact: contact, owner: user, displayName: displayName, in: session)
            }
        case .updateContact:
            let request: Parley_V1_ContactRequest = try frame.decodeMeta()
            let displayName = try request.displayName()
            let contact = UserID(request.userID)
            session.query(frame) { server throws(ParleyError) in
                var response = Parley_V1_ContactResponse()
                response.contact = Parley_V1_Contact(
                    try server.store.updateContact(contact, of: user, displayName: displayName)
                )
                return response
            }
        case .removeContact:
            let contact = UserID(try frame.decodeMeta(as: Parley_V1_UserIdRequest.self).userID)
            session.query(frame) { server throws(ParleyError) in
                try server.store.removeContact(contact, from: user)
                return Parley_V1_Empty()
            }
        case .setPresence:
            let choice = try frame.decodeMeta(as: Parley_V1_PresenceRequest.self).choice()
            let id = session.sessionID
            session.query(frame) { server throws(ParleyError) in
                try server.store.setPresenceChoice(PresenceChoice(state: choice.state, text: choice.text), for: user)
                let presence = Presence(state: choice.state, text: choice.text, since: Date())
                if let change = server.presence.change(user, session: id, to: presence) {
                    server.announce(change)
                }
                return Parley_V1_Empty()
            }
        default:
            throw ParleyError(code: .unknownRequest, message: "unknown frame type \(frame.type)")
        }
    }

    /// Adds `contact` to `owner`'s list and answers ADD_CONTACT.
    private func add(
        _ frame: Frame,
        contact: UserID,
        owner user: UserID,
        displayName: ContactDisplayName,
        in session: SessionContext
    ) {
        let tell = session.negotiatedPresence
        session.query(frame) { server throws(ParleyError) in
            let added = try server.store.addContact(
                contact,
                to: user,
                displayName: displayName,
                maximum: server.configuration.maximumContacts,
                now: Date()
            )
            if tell {
                let now = server.presence.snapshot(of: [contact])
                let change = PresenceHub.Change(
                    user: contact,
                    presence: now.presences[contact] ?? .offline,
                    sequence: now.sequence
                )
                server.registry.session(for: user)?.execute { $0.presenceOfNewContact(change) }
            }
            var response = Parley_V1_ContactResponse()
            response.contact = Parley_V1_Contact(added)
            return response
        }
    }

    /// Asks the server application whether `owner` may add `contact`, then adds it or answers
    /// CONTACT_REFUSED (also when the application does not decide in time).
    private func askApplication(
        _ frame: Frame,
        contact: UserID,
        owner: UserID,
        displayName: ContactDisplayName,
        in session: SessionContext
    ) {
        guard let handle = session.handle else { return }
        let promise = handle.eventLoop.makePromise(of: Bool.self)
        session.requestStarted(query: true)
        session.server.hooks.decide(
            late: false,
            unavailable: false,
            { application, server in await application.shouldAddContact(contact, to: owner, server: server) },
            completion: { promise.succeed($0) }
        )
        promise.futureResult.assumeIsolated().whenSuccess { [self] allowed in
            defer { session.requestAnswered(query: true) }
            guard session.identity.user == owner else { return }
            guard allowed else {
                session.respond(
                    to: frame,
                    with: ParleyError(
                        code: .contactRefused, message: "the server does not allow adding user \(contact) as a contact")
                )
                return
            }
            add(frame, contact: contact, owner: owner, displayName: displayName, in: session)
        }
    }

    func sessionStarted(in session: SessionContext) {
        guard let user = session.identity.user else { return }
        let id = session.sessionID
        let requested = session.presenceWatch?.requestedPresence
        let watch = session.negotiatedPresence ? PresenceWatch() : nil
        session.presenceWatch = watch
        let wantsEvents = watch != nil
        let server = session.server
        // Reserved here, on the loop, so that this session's end (also on the loop) always
        // comes after: a session that closes before its state is read never shows online.
        server.presence.reserve(user, session: id)
        session.blocking(
            { () throws(ParleyError) -> Snapshot? in
                let now = Date()
                try server.store.recordSession(of: user, isLogon: true, now: now)
                var stored: PresenceChoice?
                if requested == nil { stored = try server.store.presenceChoices(of: [user])[user] }
                let choice = requested ?? stored ?? PresenceChoice(state: .online, text: "")
                let presence = Presence(state: choice.state, text: choice.text, since: now)
                if let change = server.presence.online(user, session: id, presence: presence) {
                    server.announce(change)
                }
                guard wantsEvents else { return nil }
                return try Self.snapshot(of: user, server)
            },
            then: { result in
                switch result {
                case .success(let snapshot?):
                    // Not for a session that ended (or was followed by another) meanwhile.
                    guard let watch, session.presenceWatch === watch else { return }
                    Self.pushSnapshot(snapshot, to: watch, in: session)
                case .success(nil): break
                case .failure(let error):
                    session.logger.warning("presence at logon failed", metadata: ["error": "\(error)"])
                }
            }
        )
    }

    func sessionEnded(_ user: UserID, in session: SessionContext) {
        session.presenceWatch = nil
        let server = session.server
        guard let change = server.presence.offline(user, session: session.sessionID, at: Date()) else { return }
        server.blockingPool.submit { _ in
            server.announce(change)
            do {
                try server.store.recordSession(of: user, isLogon: false, now: change.presence.since ?? Date())
            } catch {
                server.logger.warning("cannot record a logoff", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The presence the logon asks for instead of the stored choice (set before the session
    /// starts, read when it starts).
    static func requestPresence(_ choice: PresenceChoice?, in session: SessionContext) {
        if let choice {
            let watch = session.presenceWatch ?? PresenceWatch()
            watch.requestedPresence = choice
            session.presenceWatch = watch
        } else {
            session.presenceWatch?.requestedPresence = nil
        }
    }

    /// A contact's presence changed (on this connection's loop).
    static func presenceChanged(_ change: PresenceHub.Change, in session: SessionContext) {
        guard session.negotiatedPresence, session.identity.user != nil, let watch = session.presenceWatch else {
            return
        }
        guard let snapshot = watch.snapshotSequence else {
            if (watch.waiting[change.user]?.sequence ?? 0) < change.sequence { watch.waiting[change.user] = change }
            return
        }
        guard change.sequence > max(snapshot, watch.applied[change.user] ?? 0) else { return }
        push(change, to: watch, in: session)
    }

    /// A contact this session just added: its current presence, even if it did not change since
    /// the snapshot.
    static func presenceOfNewContact(_ change: PresenceHub.Change, in session: SessionContext) {
        guard session.negotiatedPresence, session.identity.user != nil, let watch = session.presenceWatch else {
            return
        }
        guard watch.snapshotSequence != nil else {
            watch.waitingNew.append(change)
            return
        }
        guard change.sequence >= (watch.applied[change.user] ?? 0) else { return }
        push(change, to: watch, in: session)
    }

    private static func push(_ change: PresenceHub.Change, to watch: PresenceWatch, in session: SessionContext) {
        watch.applied[change.user] = change.sequence
        var event = Parley_V1_PresenceEvent()
        event.presences = [Parley_V1_PresenceInfo(user: change.user, presence: change.presence)]
        session.push(Frame(type: .presence, requestID: 0, message: event))
    }

    private static func pushSnapshot(_ snapshot: Snapshot, to watch: PresenceWatch, in session: SessionContext) {
        guard session.identity.user != nil else { return }
        watch.snapshotSequence = snapshot.sequence
        session.push(Frame(type: .presence, requestID: 0, message: snapshot.event))
        let late = watch.waiting.values.sorted { $0.sequence < $1.sequence }
        let added = watch.waitingNew
        watch.waiting = [:]
        watch.waitingNew = []
        for change in late { presenceChanged(change, in: session) }
        for change in added { presenceOfNewContact(change, in: session) }
    }

    /// The logon snapshot: the contact list and each contact's presence, with the hub sequence
    /// the presences reflect.
    private struct Snapshot: Sendable {
        var event: Parley_V1_PresenceEvent
        var sequence: UInt64
    }

    private static func snapshot(of user: UserID, _ server: ServerContext) throws(ParleyError) -> Snapshot {
        let list = try contactList(of: user, server)
        let contacts = list.contacts.map { UserID($0.userID) }
        let current = server.presence.snapshot(of: contacts)
        var event = Parley_V1_PresenceEvent()
        event.snapshot = true
        event.contacts = list
        event.presences = contacts.map {
            Parley_V1_PresenceInfo(user: $0, presence: current.presences[$0] ?? .offline)
        }
        return Snapshot(event: event, sequence: current.sequence)
    }

    private static func contactList(of user: UserID, _ server: ServerContext) throws(ParleyError)
        -> Parley_V1_ContactList
    {
        var list = Parley_V1_ContactList()
        list.contacts = try server.store.contacts(of: user).map(Parley_V1_Contact.init)
        list.maximum = UInt32(clamping: server.configuration.maximumContacts)
        return list
    }
}

/// What ``ContactsFamily`` keeps of one connection, on its event loop: the presence its logon
/// asked for until the session starts, then (only if HELLO negotiated PRESENCE events) the order
/// of those events. A new session starts with a new one.
final class PresenceWatch {
    /// The presence the logon asked for, instead of the stored choice.
    var requestedPresence: PresenceChoice?
    /// The hub sequence the logon snapshot reflects; nil until it was pushed.
    var snapshotSequence: UInt64?
    /// Changes that arrived before the snapshot: the latest per contact.
    var waiting: [UserID: PresenceHub.Change] = [:]
    /// Contacts added before the snapshot was pushed: their presence follows it.
    var waitingNew: [PresenceHub.Change] = []
    /// The sequence of the last change pushed for each contact.
    var applied: [UserID: UInt64] = [:]
}

@available(*, unavailable)
extension PresenceWatch: Sendable {}
