import GRDB
package import ParleyCore
import ParleySQLite

package import struct Foundation.Date

extension NodeRegistry {
    /// What the registry remembers about a user.
    ///
    /// Everything here is a cached answer: it was true when ``lastSeen`` was, and the node should
    /// present it as cached (for example "cached, last seen …") rather than as the directory's
    /// current word.
    package struct CachedUser: Sendable, Hashable {
        /// The directory fields. ``UserInfo/isOnline`` is false unless the caller said the user is
        /// online now (see ``NodeRegistry/findCachedUsers(_:onlineUserIDs:)``): the cache itself
        /// never knows.
        package var info: UserInfo
        /// The node the user was last known to use, if any.
        package var nodeID: NodeID?
        /// Where the last recorded fact about this user came from (which may only have refreshed
        /// ``lastSeen`` when the stored fields are server-vouched).
        package var source: FactSource
        /// Whether the stored fields and node ID came from the server; facts from other sources
        /// then no longer replace them.
        package var isVouchedByServer: Bool
        /// The latest time any source reported this user.
        package var lastSeen: Date

        package init(info: UserInfo, nodeID: NodeID?, source: FactSource, isVouchedByServer: Bool, lastSeen: Date) {
            self.info = info
            self.nodeID = nodeID
            self.source = source
            self.isVouchedByServer = isVouchedByServer
            self.lastSeen = lastSeen
        }
    }

    /// One page of a search of the cache.
    package struct CachedUserSearchResult: Sendable, Hashable {
        package var users: [CachedUser]
        /// True when more users matched than ``users`` holds.
        package var truncated: Bool

        package init(users: [CachedUser], truncated: Bool) {
            self.users = users
            self.truncated = truncated
        }

        /// The users as a directory answer; every ``UserInfo`` in it is a cached one.
        package var searchResult: UserSearchResult {
            UserSearchResult(users: users.map(\.info), truncated: truncated)
        }
    }

    /// The columns ``decodeCachedUser(_:)`` reads, in its order.
    private static let cachedUserColumns = """
        user_id, user_name, first_name, last_name, organization, department, application, registered_at,
        node_id, source, server_vouched, last_seen
        """

    /// Records what a source says about a user, creating or updating its cache entry.
    ///
    /// Provenance is kept simple: a fact from the server replaces the stored fields and node ID
    /// and marks them server-vouched; a fact from any other source replaces them only while they
    /// are not server-vouched (so discovery never overrides the names the server gave), and
    /// otherwise only refreshes ``CachedUser/lastSeen`` and ``CachedUser/source``. A nil `nodeID`
    /// or `registeredAt` keeps the stored one. ``CachedUser/lastSeen`` never moves backwards.
    ///
    /// - Parameters:
    ///   - user: The user's fields; validated (trimmed and checked) before they are stored.
    ///     `isOnline` is not stored.
    ///   - nodeID: The node the source says the user is on, if it says.
    ///   - source: Where the fact came from.
    ///   - seenAt: When the source reported it.
    /// - Returns: The entry as stored.
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidRequest`` when the fields are
    ///   invalid (a LAN peer's garbage is not cached), ``ParleyError/Code/storageError`` otherwise.
    @discardableResult
    package func record(
        user: UserInfo,
        nodeID: NodeID?,
        source: FactSource,
        seenAt: Date
    ) throws(ParleyError) -> CachedUser {
        let info = try user.validated()
        let vouched = source == .server
        return try write("caching a user") { db in
            let existing = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT server_vouched, last_seen FROM cached_user WHERE user_id = ?"),
                arguments: [info.userID.storedValue]
            )
            if let existing {
                let wasVouched = try existing.bool(0, "cached_user.server_vouched")
                let lastSeen = max(try existing.int64(1, "cached_user.last_seen"), seenAt.storedMilliseconds)
                if vouched || !wasVouched {
                    try db.cachedStatement(
                        sql: """
                            UPDATE cached_user SET
                                user_name = ?, first_name = ?, last_name = ?, organization = ?, department = ?,
                                application = ?, user_name_folded = ?, first_name_folded = ?,
                                last_name_folded = ?, organization_folded = ?, department_folded = ?,
                                application_folded = ?, registered_at = ifnull(?, registered_at),
                                node_id = ifnull(?, node_id), source = ?, server_vouched = ?, last_seen = ?
                            WHERE user_id = ?
                            """
                    ).execute(arguments: [
                        info.userName, info.firstName, info.lastName, info.organization, info.department,
                        info.application, info.userName.folded, info.firstName.folded, info.lastName.folded,
                        info.organization.folded, info.department.folded, info.application.folded,
                        info.registeredAt?.storedMilliseconds, nodeID?.description, source.rawValue,
                        vouched || wasVouched,
                        lastSeen, info.userID.storedValue,
                    ])
                } else {
                    try db.cachedStatement(sql: "UPDATE cached_user SET source = ?, last_seen = ? WHERE user_id = ?")
                        .execute(arguments: [source.rawValue, lastSeen, info.userID.storedValue])
                }
            } else {
                try db.cachedStatement(
                    sql: """
                        INSERT INTO cached_user (
                            user_id, user_name, first_name, last_name, organization, department, application,
                            user_name_folded, first_name_folded, last_name_folded, organization_folded,
                            department_folded, application_folded, registered_at, node_id, source,
                            server_vouched, last_seen
                        ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [
                    info.userID.storedValue, info.userName, info.firstName, info.lastName, info.organization,
                    info.department, info.application, info.userName.folded, info.firstName.folded,
                    info.lastName.folded, info.organization.folded, info.department.folded,
                    info.application.folded, info.registeredAt?.storedMilliseconds, nodeID?.description,
                    source.rawValue,
                    vouched, seenAt.storedMilliseconds,
                ])
            }
            let select = try db.cachedStatement(
                sql: "SELECT \(Self.cachedUserColumns) FROM cached_user WHERE user_id = ?"
            )
            guard let row = try Row.fetchOne(select, arguments: [info.userID.storedValue]) else {
                throw ParleyError(code: .storageError, message: "the cached user \(info.userID) vanished")
            }
            return try Self.decodeCachedUser(row)
        }
    }

    /// The cache entry of the user with this ID, or nil.
    package func cachedUser(_ id: UserID) throws(ParleyError) -> CachedUser? {
        try read("reading a cached user") { db in
            let statement = try db.cachedStatement(
                sql: "SELECT \(Self.cachedUserColumns) FROM cached_user WHERE user_id = ?"
            )
            guard let row = try Row.fetchOne(statement, arguments: [id.storedValue]) else { return nil }
            return try Self.decodeCachedUser(row)
        }
    }

    /// The IDs of the cached users whose user name equals `name` (trimmed) case-insensitively,
    /// ascending.
    package func cachedUserIDs(named name: String) throws(ParleyError) -> [UserID] {
        try read("looking up a cached user name") { db in
            let statement = try db.cachedStatement(
                sql: "SELECT user_id FROM cached_user WHERE user_name_folded = ? ORDER BY user_id"
            )
            var ids: [UserID] = []
            let rows = try Row.fetchCursor(statement, arguments: [name.trimmingWhitespace().folded])
            while let row = try rows.next() {
                ids.append(try row.userID(0, "cached_user.user_id"))
            }
            return ids
        }
    }

    /// Searches the cache with the directory's query semantics.
    ///
    /// Every filter must hold; text is compared case-insensitively (non-ASCII letters included)
    /// and literally (`%` and `_` are not wildcards). Ties of a field sort are broken by user ID
    /// in the same direction.
    ///
    /// The cache does not know who is online. `onlineUserIDs` is whoever the caller knows to be
    /// online now (for example the peers discovery sees): it drives the online filter and each
    /// result's ``UserInfo/isOnline``. With the default, empty set every cached user counts as
    /// offline, so ``UserQuery/OnlineFilter/online`` finds nobody.
    package func findCachedUsers(
        _ query: UserQuery,
        onlineUserIDs: Set<UserID> = []
    ) throws(ParleyError) -> CachedUserSearchResult {
        if query.online == .online && onlineUserIDs.isEmpty {
            return CachedUserSearchResult(users: [], truncated: false)
        }
        let limit = query.effectiveLimit
        let search = UserSearchSQL(
            query, onlineUserIDs: onlineUserIDs, columns: Self.cachedUserColumns, table: "cached_user")

        return try read("searching cached users") { db in
            // Not cached: the number of filter combinations is unbounded.
            let statement = try db.makeStatement(sql: search.sql)
            var users: [CachedUser] = []
            let rows = try Row.fetchCursor(statement, arguments: search.arguments)
            while let row = try rows.next() {
                var user = try Self.decodeCachedUser(row)
                user.info.isOnline = onlineUserIDs.contains(user.info.userID)
                users.append(user)
            }
            let truncated = users.count > limit
            if truncated { users.removeLast(users.count - limit) }
            return CachedUserSearchResult(users: users, truncated: truncated)
        }
    }

    /// Decodes the columns of ``cachedUserColumns``.
    private static func decodeCachedUser(_ row: Row) throws -> CachedUser {
        let info = UserInfo(
            userID: try row.userID(0, "cached_user.user_id"),
            userName: try row.text(1, "cached_user.user_name"),
            firstName: try row.text(2, "cached_user.first_name"),
            lastName: try row.text(3, "cached_user.last_name"),
            organization: try row.text(4, "cached_user.organization"),
            department: try row.text(5, "cached_user.department"),
            application: try row.text(6, "cached_user.application"),
            isOnline: false,
            registeredAt: try row.nullableDate(7, "cached_user.registered_at")
        )
        return CachedUser(
            info: info,
            nodeID: try row.nullableNodeID(8, "cached_user.node_id"),
            source: try row.factSource(9, "cached_user.source"),
            isVouchedByServer: try row.bool(10, "cached_user.server_vouched"),
            lastSeen: try row.date(11, "cached_user.last_seen")
        )
    }
}

// Decoders for the registry's nullable and enumerated columns; as strict as those of the
// server's store.
extension Row {
    /// A node ID stored in its text form; anything else is a corrupt row.
    func nodeID(_ index: Int, _ column: StaticString) throws -> NodeID {
        let text = try text(index, column)
        guard let nodeID = NodeID(text) else {
            throw ParleyError(code: .storageError, message: "the stored \(column) is not a node ID: \(text.prefix(64))")
        }
        return nodeID
    }

    func nullableNodeID(_ index: Int, _ column: StaticString) throws -> NodeID? {
        if try decode(DatabaseValue.self, atIndex: index).isNull { return nil }
        return try nodeID(index, column)
    }

    func nullableText(_ index: Int, _ column: StaticString) throws -> String? {
        if try decode(DatabaseValue.self, atIndex: index).isNull { return nil }
        return try text(index, column)
    }

    func nullableBytes(_ index: Int, _ column: StaticString) throws -> [UInt8]? {
        if try decode(DatabaseValue.self, atIndex: index).isNull { return nil }
        return try bytes(index, column)
    }

    func nullableInt64(_ index: Int, _ column: StaticString) throws -> Int64? {
        if try decode(DatabaseValue.self, atIndex: index).isNull { return nil }
        return try int64(index, column)
    }

    func nullableDate(_ index: Int, _ column: StaticString) throws -> Date? {
        try nullableInt64(index, column).map(Date.init(storedMilliseconds:))
    }

    func nullableUserID(_ index: Int, _ column: StaticString) throws -> UserID? {
        if try decode(DatabaseValue.self, atIndex: index).isNull { return nil }
        return try userID(index, column)
    }

    func factSource(_ index: Int, _ column: StaticString) throws -> FactSource {
        let raw = try text(index, column)
        guard let source = FactSource(rawValue: raw) else {
            throw ParleyError(code: .storageError, message: "corrupt row: \(column) holds the unknown source \(raw)")
        }
        return source
    }
}
