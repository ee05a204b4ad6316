package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

/// The order of an admin's user list (``ServerStore/listUsers(order:descending:offset:limit:)``).
package enum UserListOrder: Sendable, Hashable {
    case userID
    /// By user name, case-folded; ties by user ID.
    case userName
    /// By registration time; ties by user ID.
    case registeredAt
    /// By last logon; users who never logged on come last (first when descending).
    case lastLogon

    fileprivate func sql(descending: Bool) -> String {
        let direction = descending ? "DESC" : "ASC"
        return switch self {
        case .userID: "user_id \(direction)"
        case .userName: "user_name_folded \(direction), user_id \(direction)"
        case .registeredAt: "registered_at \(direction), user_id \(direction)"
        case .lastLogon: "last_logon_at IS NULL \(direction), last_logon_at \(direction), user_id \(direction)"
        }
    }
}

/// A user as the admin's user list shows it.
package struct UserListing: Sendable, Hashable {
    /// The directory fields (`isOnline` false: the store does not know).
    package var info: UserInfo
    /// When the user last logged on; nil if never.
    package var lastLogonAt: Date?
    /// When the user's last session ended; nil if never.
    package var lastLogoffAt: Date?
}

extension ServerStore {
    /// A page of users in `order`.
    ///
    /// - Parameters:
    ///   - offset: Users to skip (at least 0).
    ///   - limit: Users at most (1...10000).
    package func listUsers(
        order: UserListOrder,
        descending: Bool,
        offset: Int,
        limit: Int
    ) throws(ParleyError) -> [UserListing] {
        let offset = max(offset, 0)
        let limit = min(max(limit, 1), 10_000)
        return try read("listing users") { db in
            let statement = try db.cachedStatement(
                sql: """
                    SELECT \(Self.userColumns), last_logon_at, last_logoff_at FROM user
                    ORDER BY \(order.sql(descending: descending)) LIMIT ? OFFSET ?
                    """
            )
            var users: [UserListing] = []
            let rows = try Row.fetchCursor(statement, arguments: [limit, offset])
            while let row = try rows.next() {
                users.append(
                    UserListing(
                        info: try Self.decodeUser(row),
                        lastLogonAt: try row.dateOrNil(13, "user.last_logon_at"),
                        lastLogoffAt: try row.dateOrNil(14, "user.last_logoff_at")
                    )
                )
            }
            return users
        }
    }

    /// How many users are registered.
    package func userCount() throws(ParleyError) -> Int {
        try read("counting users") { db in
            try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM user")) ?? 0
        }
    }

    /// Deletes a user with everything that is theirs: their contact list, their entries in
    /// others' contact lists, their resumption tokens and the messages waiting for them (a
    /// message to several users stays for the others). Messages they sent stay with their
    /// recipients.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `userNotFound` for an unknown user.
    package func deleteUser(_ id: UserID) throws(ParleyError) {
        try write("deleting a user") { db in
            let user = id.storedValue
            guard
                try Bool.fetchOne(
                    db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM user WHERE user_id = ?)"),
                    arguments: [user]) == true
            else {
                throw ParleyError(code: .userNotFound, message: "no user has ID \(id)")
            }
            // Each message waiting for this user loses one pending delivery; a message nobody
            // else waits for goes with it.
            let waiting = try Int64.fetchAll(
                db.cachedStatement(
                    sql:
                        "SELECT message FROM delivery WHERE recipient = ? AND acknowledged_at IS NULL AND message IS NOT NULL"
                ),
                arguments: [user]
            )
            let release = try db.cachedStatement(
                sql: "UPDATE message SET pending_count = pending_count - 1 WHERE id = ?")
            let drop = try db.cachedStatement(sql: "DELETE FROM message WHERE id = ? AND pending_count <= 0")
            for message in waiting {
                try release.execute(arguments: [message])
                try drop.execute(arguments: [message])
            }
            try db.execute(sql: "DELETE FROM delivery WHERE recipient = ?", arguments: [user])
            try db.execute(sql: "DELETE FROM contact WHERE owner = ? OR contact = ?", arguments: [user, user])
            try db.execute(sql: "DELETE FROM resumption_token WHERE user_id = ?", arguments: [user])
            try db.execute(sql: "DELETE FROM stored_command WHERE recipient = ?", arguments: [user])
            try db.execute(sql: "DELETE FROM user WHERE user_id = ?", arguments: [user])
        }
    }

    /// Reserves a user ID: REGISTER can neither ask for it nor be given it, until
    /// ``releaseUserID(_:)``.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `userAlreadyExists` when a user has the ID,
    ///   `invalidUserID` for the server's own ID 0.
    package func reserveUserID(_ id: UserID, now: Date) throws(ParleyError) {
        guard id != .server else {
            throw ParleyError(code: .invalidUserID, message: "user ID 0 is the server's own")
        }
        try write("reserving a user ID") { db in
            let taken = try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM user WHERE user_id = ?)"),
                arguments: [id.storedValue])
            guard taken != true else {
                throw ParleyError(code: .userAlreadyExists, message: "user ID \(id) belongs to a registered user")
            }
            try db.execute(
                sql: "INSERT OR IGNORE INTO reserved_user_id (user_id, reserved_at) VALUES (?, ?)",
                arguments: [id.storedValue, now.storedMilliseconds]
            )
        }
    }

    /// Makes a reserved user ID available to REGISTER again.
    ///
    /// - Returns: false when the ID was not reserved.
    @discardableResult
    package func releaseUserID(_ id: UserID) throws(ParleyError) -> Bool {
        try write("releasing a user ID") { db in
            try db.execute(sql: "DELETE FROM reserved_user_id WHERE user_id = ?", arguments: [id.storedValue])
            return db.changesCount > 0
        }
    }

    /// The reserved user IDs, lowest first.
    package func reservedUserIDs() throws(ParleyError) -> [UserID] {
        try read("listing reserved user IDs") { db in
            var ids: [UserID] = []
            let rows = try Row.fetchCursor(
                db.cachedStatement(sql: "SELECT user_id FROM reserved_user_id ORDER BY user_id"))
            while let row = try rows.next() {
                ids.append(try row.userID(0, "reserved_user_id.user_id"))
            }
            return ids
        }
    }

    /// Whether `id` is reserved, inside a write transaction.
    static func isReserved(_ db: Database, _ id: UserID) throws -> Bool {
        try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM reserved_user_id WHERE user_id = ?)"),
            arguments: [id.storedValue]) ?? false
    }
}
