package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

extension ServerStore {
    /// The columns ``decodeUser(_:)`` reads, in its order.
    static let userColumns = """
        user_id, user_name, first_name, last_name, organization, department, application, registered_at,
        node_id, node_public_key, direct_addresses, allow_direct, node_key_updated_at
        """

    /// Registers a user.
    ///
    /// - Parameters:
    ///   - info: The directory fields, already validated; its `userID`, `isOnline` and
    ///     `registeredAt` are ignored.
    ///   - passwordHash: Stored as given.
    ///   - requestedID: The ID the user asked for, or nil to assign the next free one:
    ///     max(highest existing ID + 1, `minimumID`), chosen inside the write transaction so
    ///     concurrent registrations never collide.
    ///   - minimumID: The lowest ID the server hands out or grants.
    ///   - now: The registration time.
    /// - Returns: The stored info, with its user ID and registration time.
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidUserID`` when `requestedID` is
    ///   0, below `minimumID` or reserved by the admin (``reserveUserID(_:now:)``),
    ///   ``ParleyError/Code/userAlreadyExists`` when it is taken,
    ///   ``ParleyError/Code/userIDsExhausted`` when no ID above the highest is left.
    package func registerUser(
        _ info: UserInfo,
        passwordHash: String,
        requestedID: UserID?,
        minimumID: UserID,
        now: Date
    ) throws(ParleyError) -> UserInfo {
        if let requestedID, requestedID == .server || requestedID < minimumID {
            throw ParleyError(
                code: .invalidUserID,
                message: "user ID \(requestedID) is reserved or below the minimum \(minimumID)"
            )
        }
        let registeredAt = now.storedMilliseconds
        return try write("registering a user") { db in
            let id: UserID
            if let requestedID {
                guard try !Self.isReserved(db, requestedID) else {
                    throw ParleyError(code: .invalidUserID, message: "user ID \(requestedID) is reserved by the admin")
                }
                id = requestedID
            } else {
                id = try Self.nextUserID(db, minimumID: minimumID)
            }
            let insert = try db.cachedStatement(
                sql: """
                    INSERT INTO user (
                        user_id, user_name, first_name, last_name, organization, department, application,
                        user_name_folded, first_name_folded, last_name_folded, organization_folded,
                        department_folded, application_folded, password_hash, registered_at
                    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            )
            do {
                try insert.execute(arguments: [
                    id.storedValue, info.userName, info.firstName, info.lastName, info.organization,
                    info.department, info.application, info.userName.folded, info.firstName.folded,
                    info.lastName.folded, info.organization.folded, info.department.folded,
                    info.application.folded, passwordHash, registeredAt,
                ])
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw ParleyError(code: .userAlreadyExists, message: "user ID \(id) is taken", cause: error)
            }
            // Only the text fields are stored here: node fields in `info` are not recorded, so
            // they are not returned either.
            var stored = UserInfo(
                userName: info.userName,
                firstName: info.firstName,
                lastName: info.lastName,
                organization: info.organization,
                department: info.department,
                application: info.application
            )
            stored.userID = id
            stored.isOnline = false
            stored.registeredAt = Date(storedMilliseconds: registeredAt)
            return stored
        }
    }

    /// The next ID to assign: one above the highest (registered or reserved), at least
    /// `minimumID`, never 0.
    private static func nextUserID(_ db: Database, minimumID: UserID) throws -> UserID {
        let highest =
            try Int64.fetchOne(
                db.cachedStatement(
                    sql:
                        "SELECT MAX(id) FROM (SELECT MAX(user_id) AS id FROM user UNION ALL SELECT MAX(user_id) FROM reserved_user_id)"
                )
            ) ?? 0
        let (afterHighest, overflow) = highest.addingReportingOverflow(1)
        let next = max(overflow ? .max : afterHighest, minimumID.storedValue, 1)
        guard let raw = UInt32(exactly: next) else {
            throw ParleyError(code: .userIDsExhausted, message: "no user ID above \(highest) is left")
        }
        return UserID(raw)
    }

    /// The user with this ID, or nil.
    package func user(_ id: UserID) throws(ParleyError) -> StoredUser? {
        try read("reading a user") { db in
            let statement = try db.cachedStatement(
                sql: "SELECT \(Self.userColumns), password_hash FROM user WHERE user_id = ?"
            )
            guard let row = try Row.fetchOne(statement, arguments: [id.storedValue]) else { return nil }
            return StoredUser(info: try Self.decodeUser(row), passwordHash: try row.text(13, "user.password_hash"))
        }
    }

    /// Whether a user with this ID is registered.
    package func userExists(_ id: UserID) throws(ParleyError) -> Bool {
        try read("looking up a user") { db in
            let statement = try db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM user WHERE user_id = ?)")
            return try Bool.fetchOne(statement, arguments: [id.storedValue]) ?? false
        }
    }

    /// The subset of `ids` that are registered users, found with one query.
    package func existingUserIDs(among ids: [UserID]) throws(ParleyError) -> Set<UserID> {
        if ids.isEmpty { return [] }
        return try read("looking up users") { db in try Self.existingUserIDs(among: ids, in: db) }
    }

    static func existingUserIDs(among ids: [UserID], in db: Database) throws -> Set<UserID> {
        let statement = try db.cachedStatement(
            sql: "SELECT user_id FROM user WHERE user_id IN (SELECT value FROM json_each(?))"
        )
        var found = Set<UserID>()
        let rows = try Row.fetchCursor(statement, arguments: [ids.jsonArray])
        while let row = try rows.next() {
            found.insert(try row.userID(0, "user.user_id"))
        }
        return found
    }

    /// Replaces a user's six text fields (already validated).
    ///
    /// - Returns: The stored info.
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/userNotFound`` if there is no such user.
    package func updateUserInfo(_ id: UserID, to info: UserInfo) throws(ParleyError) -> UserInfo {
        try write("updating a user") { db in
            let update = try db.cachedStatement(
                sql: """
                    UPDATE user SET
                        user_name = ?, first_name = ?, last_name = ?, organization = ?, department = ?,
                        application = ?, user_name_folded = ?, first_name_folded = ?, last_name_folded = ?,
                        organization_folded = ?, department_folded = ?, application_folded = ?
                    WHERE user_id = ?
                    """
            )
            try update.execute(arguments: [
                info.userName, info.firstName, info.lastName, info.organization, info.department,
                info.application, info.userName.folded, info.firstName.folded, info.lastName.folded,
                info.organization.folded, info.department.folded, info.application.folded, id.storedValue,
            ])
            guard db.changesCount > 0 else { throw Self.userNotFound(id) }
            let select = try db.cachedStatement(sql: "SELECT \(Self.userColumns) FROM user WHERE user_id = ?")
            guard let row = try Row.fetchOne(select, arguments: [id.storedValue]) else { throw Self.userNotFound(id) }
            return try Self.decodeUser(row)
        }
    }

    /// Records the node a user declared at logon, replacing the one recorded before.
    ///
    /// - Parameters:
    ///   - user: The user who logged on.
    ///   - nodeID: The node's ID, already checked against `publicKey`.
    ///   - publicKey: SubjectPublicKeyInfo DER of the node's key, already validated.
    ///   - directAddresses: "host:port" addresses, already validated; stored in this order.
    ///   - allowsDirect: The user's consent to direct links.
    ///   - now: The time recorded as ``UserInfo/nodeKeyUpdatedAt``.
    /// - Returns: The stored info with the new node.
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/userNotFound`` if there is no such user.
    @discardableResult
    package func recordNode(
        for user: UserID,
        nodeID: String,
        publicKey: [UInt8],
        directAddresses: [String],
        allowsDirect: Bool,
        now: Date
    ) throws(ParleyError) -> UserInfo {
        let addresses = try Self.encodeAddresses(directAddresses)
        return try write("recording a node") { db in
            let update = try db.cachedStatement(
                sql: """
                    UPDATE user SET
                        node_id = ?, node_public_key = ?, direct_addresses = ?, allow_direct = ?,
                        node_key_updated_at = ?
                    WHERE user_id = ?
                    """
            )
            try update.execute(arguments: [
                nodeID, Data(publicKey), addresses, allowsDirect, now.storedMilliseconds, user.storedValue,
            ])
            guard db.changesCount > 0 else { throw Self.userNotFound(user) }
            let select = try db.cachedStatement(sql: "SELECT \(Self.userColumns) FROM user WHERE user_id = ?")
            guard let row = try Row.fetchOne(select, arguments: [user.storedValue]) else {
                throw Self.userNotFound(user)
            }
            return try Self.decodeUser(row)
        }
    }

    /// The stored form of a node's direct addresses: a JSON array of strings.
    private static func encodeAddresses(_ addresses: [String]) throws(ParleyError) -> String {
        do {
            return String(decoding: try JSONEncoder().encode(addresses), as: UTF8.self)
        } catch {
            throw ParleyError(code: .internalError, message: "cannot encode direct addresses", cause: error)
        }
    }

    /// Replaces a user's password hash.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/userNotFound`` if there is no such user.
    package func updatePasswordHash(_ id: UserID, to hash: String) throws(ParleyError) {
        try write("updating a password") { db in
            let update = try db.cachedStatement(sql: "UPDATE user SET password_hash = ? WHERE user_id = ?")
            try update.execute(arguments: [hash, id.storedValue])
            guard db.changesCount > 0 else { throw Self.userNotFound(id) }
        }
    }

    /// The IDs of the users whose user name equals `name` case-insensitively, ascending.
    package func userIDs(named name: String) throws(ParleyError) -> [UserID] {
        try read("looking up a user name") { db in
            let statement = try db.cachedStatement(
                sql: "SELECT user_id FROM user WHERE user_name_folded = ? ORDER BY user_id"
            )
            var ids: [UserID] = []
            let rows = try Row.fetchCursor(statement, arguments: [name.folded])
            while let row = try rows.next() {
                ids.append(try row.userID(0, "user.user_id"))
            }
            return ids
        }
    }

    /// Searches the directory.
    ///
    /// Every filter must hold; text is compared case-insensitively and literally (`%` and `_`
    /// are not wildcards). Ties of a field sort are broken by user ID in the same direction, so a
    /// descending sort is the exact reverse of the ascending one.
    ///
    /// - Parameters:
    ///   - query: The filters, online filter, sort and limit (``UserQuery/effectiveLimit``).
    ///   - onlineUserIDs: Who is logged on now: it drives the online filter and each result's
    ///     ``UserInfo/isOnline``.
    package func findUsers(_ query: UserQuery, onlineUserIDs: Set<UserID>) throws(ParleyError) -> UserSearchResult {
        if query.online == .online && onlineUserIDs.isEmpty {
            return UserSearchResult(users: [], truncated: false)
        }
        let limit = query.effectiveLimit
        let search = UserSearchSQL(query, onlineUserIDs: onlineUserIDs, columns: Self.userColumns, table: "user")

        return try read("searching users") { db in
            // Not cached: the number of filter combinations is unbounded.
            let statement = try db.makeStatement(sql: search.sql)
            var users: [UserInfo] = []
            let rows = try Row.fetchCursor(statement, arguments: search.arguments)
            while let row = try rows.next() {
                var user = try Self.decodeUser(row)
                user.isOnline = onlineUserIDs.contains(user.userID)
                users.append(user)
            }
            let truncated = users.count > limit
            if truncated { users.removeLast(users.count - limit) }
            return UserSearchResult(users: users, truncated: truncated)
        }
    }

    /// Decodes the columns of ``userColumns``.
    static func decodeUser(_ row: Row) throws -> UserInfo {
        UserInfo(
            userID: try row.userID(0, "user.user_id"),
            userName: try row.text(1, "user.user_name"),
            firstName: try row.text(2, "user.first_name"),
            lastName: try row.text(3, "user.last_name"),
            organization: try row.text(4, "user.organization"),
            department: try row.text(5, "user.department"),
            application: try row.text(6, "user.application"),
            isOnline: false,
            registeredAt: try row.date(7, "user.registered_at"),
            nodeID: try row.textOrNil(8, "user.node_id"),
            nodePublicKey: try row.bytesOrNil(9, "user.node_public_key"),
            directAddresses: try row.directAddresses(10, "user.direct_addresses"),
            allowsDirectLinks: try row.bool(11, "user.allow_direct"),
            nodeKeyUpdatedAt: try row.dateOrNil(12, "user.node_key_updated_at")
        )
    }

    private static func userNotFound(_ id: UserID) -> ParleyError {
        ParleyError(code: .userNotFound, message: "no user has ID \(id)")
    }
}

// The node columns (migration "v2-node-keys") are NULL until a user declares a node.
extension Row {
    fileprivate func textOrNil(_ index: Int, _ column: StaticString) throws -> String? {
        try holdsNull(index) ? nil : text(index, column)
    }

    fileprivate func bytesOrNil(_ index: Int, _ column: StaticString) throws -> [UInt8]? {
        try holdsNull(index) ? nil : bytes(index, column)
    }

    func dateOrNil(_ index: Int, _ column: StaticString) throws -> Date? {
        try holdsNull(index) ? nil : date(index, column)
    }

    /// A JSON array of strings; NULL is no addresses.
    fileprivate func directAddresses(_ index: Int, _ column: StaticString) throws -> [String] {
        guard let json = try textOrNil(index, column) else { return [] }
        do {
            return try JSONDecoder().decode([String].self, from: Data(json.utf8))
        } catch {
            throw ParleyError(code: .storageError, message: "corrupt row: \(column) holds no JSON array of strings")
        }
    }

    private func holdsNull(_ index: Int) throws -> Bool {
        try decode(DatabaseValue.self, atIndex: index).isNull
    }
}
