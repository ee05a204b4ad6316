public import Foundation
import NIOPosix
public import ParleyCore
import ParleyServerStore

/// The admin's view and tools: users, sessions, kicks, deletions, reserved IDs, contact lists,
/// and the server as a participant (broadcasts). The same operations are served on the admin
/// socket (docs/ADMIN.md) for `parley admin`.
///
/// Every method needs a running server (``run()``) and throws SHUTTING_DOWN otherwise. Store
/// work runs on the server's blocking threads, never on an event loop.
extension ParleyServer {
    /// The order of ``users(sortedBy:descending:offset:limit:)``.
    public enum UserOrder: String, Sendable, Hashable, CaseIterable, Codable {
        /// By user ID.
        case id
        /// By user name (case-insensitive), then ID.
        case name
        /// By registration time, then ID.
        case registered
        /// By last logon; users who never logged on come last.
        case lastLogon = "last-logon"
    }

    /// A registered user as the admin sees it.
    public struct UserSummary: Sendable, Hashable, Codable {
        /// The directory entry; `isOnline` is the user's state right now.
        public var info: UserInfo
        /// When the user last logged on; nil if never.
        public var lastLogonAt: Date?
        /// When the user's last session ended; nil if never.
        public var lastLogoffAt: Date?

        /// Makes a summary.
        public init(info: UserInfo, lastLogonAt: Date?, lastLogoffAt: Date?) {
            self.info = info
            self.lastLogonAt = lastLogonAt
            self.lastLogoffAt = lastLogoffAt
        }
    }

    /// How many users the server has and how many are connected.
    public struct Counts: Sendable, Hashable, Codable {
        /// Registered users.
        public var users: Int
        /// Users logged on now.
        public var online: Int
        /// Open connections that are not logged on.
        public var guests: Int

        /// Makes counts.
        public init(users: Int, online: Int, guests: Int) {
            self.users = users
            self.online = online
            self.guests = guests
        }
    }

    /// The server's shared state, or SHUTTING_DOWN when it does not run.
    func requireRunningContext() throws(ParleyError) -> ServerContext {
        guard let context = runningContext else {
            throw ParleyError(code: .shuttingDown, message: "the server is not running")
        }
        return context
    }

    /// Runs store work on the blocking threads.
    private func offLoop<T: Sendable>(
        _ work: @escaping @Sendable (ServerContext) throws(ParleyError) -> T
    ) async throws(ParleyError) -> T {
        let context = try requireRunningContext()
        do {
            return try await context.blockingPool.runIfActive { try work(context) }
        } catch {
            throw ServerConnectionHandler.parleyError(error)
        }
    }

    /// A page of registered users.
    ///
    /// - Parameters:
    ///   - order: The sort field.
    ///   - descending: Largest first.
    ///   - offset: Users to skip.
    ///   - limit: Users at most (1...10000).
    public func users(
        sortedBy order: UserOrder = .id,
        descending: Bool = false,
        offset: Int = 0,
        limit: Int = 100
    ) async throws(ParleyError) -> [UserSummary] {
        let storeOrder: UserListOrder =
            switch order {
            case .id: .userID
            case .name: .userName
            case .registered: .registeredAt
            case .lastLogon: .lastLogon
            }
        return try await offLoop { context throws(ParleyError) in
            let online = context.registry.onlineUsers
            return try context.store.listUsers(order: storeOrder, descending: descending, offset: offset, limit: limit)
                .map { listing in
                    var info = listing.info
                    info.isOnline = online.contains(info.userID)
                    return UserSummary(info: info, lastLogonAt: listing.lastLogonAt, lastLogoffAt: listing.lastLogoffAt)
                }
        }
    }

    /// The logged-on sessions, by user ID.
    public func sessions() throws(ParleyError) -> [ServerSession] {
        try requireRunningContext().registry.sessionDescriptions
    }

    /// Registered users, users online, and connections not logged on.
    public func counts() async throws(ParleyError) -> Counts {
        try await offLoop { context throws(ParleyError) in
            let users = try context.store.userCount()
            let (connections, sessions, _) = context.registry.snapshot(listing: 0)
            return Counts(users: users, online: sessions, guests: max(connections - sessions, 0))
        }
    }

    /// Closes `user`'s session: the client gets a fatal ERROR KICKED (44) with `reason` and does
    /// not reconnect by itself.
    ///
    /// - Returns: false when the user is not logged on.
    @discardableResult
    public func kick(user: UserID, reason: String) throws(ParleyError) -> Bool {
        guard let handle = try requireRunningContext().registry.session(for: user) else { return false }
        handle.execute { $0.kick(reason: reason) }
        return true
    }

    /// Closes the session numbered `session` (``ServerSession/id``) as ``kick(user:reason:)`` does.
    ///
    /// - Returns: false when no such session is logged on.
    @discardableResult
    public func kick(session: UInt64, reason: String) throws(ParleyError) -> Bool {
        guard let handle = try requireRunningContext().registry.session(numbered: session) else { return false }
        handle.execute { $0.kick(reason: reason) }
        return true
    }

    /// Deletes a user: kicks their session if they are online (with `reason`), then removes them
    /// with their contact list, their entries in others' lists, and the messages waiting for them.
    ///
    /// - Throws: USER_NOT_FOUND for an unknown user.
    public func deleteUser(_ user: UserID, reason: String = "the account was deleted") async throws(ParleyError) {
        guard user != .server else {
            throw ParleyError(code: .invalidUserID, message: "user ID 0 is the server's own")
        }
        try await offLoop { context throws(ParleyError) in
            guard try context.store.userExists(user) else {
                throw ParleyError(code: .userNotFound, message: "no user has ID \(user)")
            }
            context.registry.session(for: user)?.execute { $0.kick(reason: reason) }
            // The user's held transfers, sent or received, go with it (their spool files too).
            for transfer in try context.store.heldTransfers(involving: user) {
                try context.finishTransfer(transfer, outcome: .deleted, reason: "user \(user) was deleted", by: nil)
            }
            try context.store.deleteUser(user)
            try context.committer.dropMessages(for: user)
        }
    }

    /// Reserves a user ID: REGISTER can neither ask for it nor be given it until
    /// ``releaseUserID(_:)``.
    ///
    /// - Throws: USER_ALREADY_EXISTS when a user has the ID.
    public func reserveUserID(_ id: UserID) async throws(ParleyError) {
        try await offLoop { context throws(ParleyError) in try context.store.reserveUserID(id, now: Date()) }
    }

    /// Lets REGISTER take a reserved ID again (a user asking for it, or the admin registering it).
    ///
    /// - Returns: false when the ID was not reserved.
    @discardableResult
    public func releaseUserID(_ id: UserID) async throws(ParleyError) -> Bool {
        try await offLoop { context throws(ParleyError) in try context.store.releaseUserID(id) }
    }

    /// The reserved user IDs, lowest first.
    public func reservedUserIDs() async throws(ParleyError) -> [UserID] {
        try await offLoop { context throws(ParleyError) in try context.store.reservedUserIDs() }
    }

    /// When a user last logged on and off, and whether they are online.
    public struct LastSeen: Sendable, Hashable, Codable {
        /// Whom the times are of.
        public var user: UserID
        /// When the user last logged on; nil if never.
        public var lastLogonAt: Date?
        /// When the user's last session ended; nil if never.
        public var lastLogoffAt: Date?
        /// Whether the user is logged on now.
        public var isOnline: Bool

        /// Makes a record.
        public init(user: UserID, lastLogonAt: Date?, lastLogoffAt: Date?, isOnline: Bool) {
            self.user = user
            self.lastLogonAt = lastLogonAt
            self.lastLogoffAt = lastLogoffAt
            self.isOnline = isOnline
        }
    }

    /// A user's last logon and logoff times.
    ///
    /// - Throws: USER_NOT_FOUND for an unknown user.
    public func lastSeen(_ user: UserID) async throws(ParleyError) -> LastSeen {
        try await offLoop { context throws(ParleyError) in
            let (logon, logoff) = try context.store.lastSeen(of: user)
            return LastSeen(
                user: user, lastLogonAt: logon, lastLogoffAt: logoff, isOnline: context.registry.isOnline(user))
        }
    }

    /// A user's contact list.
    ///
    /// - Throws: USER_NOT_FOUND for an unknown user.
    public func contacts(of user: UserID) async throws(ParleyError) -> [Contact] {
        try await offLoop { context throws(ParleyError) in
            guard try context.store.userExists(user) else {
                throw ParleyError(code: .userNotFound, message: "no user has ID \(user)")
            }
            return try context.store.contacts(of: user)
        }
    }

    /// Adds `contact` to `user`'s contact list (the application's veto does not apply to the
    /// admin). The user's client sees it in its next contact list or logon snapshot.
    ///
    /// - Throws: USER_NOT_FOUND, TOO_MANY_CONTACTS, INVALID_REQUEST (the user themself).
    @discardableResult
    public func addContact(
        _ contact: UserID,
        to user: UserID,
        displayName: ContactDisplayName = .userName
    ) async throws(ParleyError) -> Contact {
        try await offLoop { context throws(ParleyError) in
            guard try context.store.userExists(user) else {
                throw ParleyError(code: .userNotFound, message: "no user has ID \(user)")
            }
            return try context.store.addContact(
                contact,
                to: user,
                displayName: displayName,
                maximum: context.configuration.maximumContacts,
                now: Date()
            )
        }
    }

    /// Removes `contact` from `user`'s contact list.
    ///
    /// - Throws: CONTACT_NOT_FOUND when it is not in the list.
    public func removeContact(_ contact: UserID, from user: UserID) async throws(ParleyError) {
        try await offLoop { context throws(ParleyError) in try context.store.removeContact(contact, from: user) }
    }

    /// Sends a message from the server (sender ``/ParleyCore/UserID/server``) to every user
    /// online now: a notice. Users who are offline do not get it.
    ///
    /// - Returns: one result per recipient.
    public func broadcast(_ body: MessageBody, id: MessageID = .random()) async throws(ParleyError) -> [DeliveryResult]
    {
        let online = try requireRunningContext().registry.onlineUsers
        return try await send(body, to: online.sorted(), id: id)
    }
}
