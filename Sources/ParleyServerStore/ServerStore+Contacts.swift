package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

/// The presence a user chose to show while it is online, as stored.
package struct PresenceChoice: Hashable, Sendable {
    /// Never ``/ParleyCore/PresenceState/offline``.
    package var state: PresenceState
    package var text: String

    package init(state: PresenceState, text: String) {
        self.state = state
        self.text = text
    }
}

extension ServerStore {
    /// Adds `contact` to `owner`'s contact list, or changes its display name if it is there.
    ///
    /// - Parameters:
    ///   - contact: Must be a registered user other than `owner`.
    ///   - displayName: Already validated (``/ParleyCore/ContactDisplayName/validate()``).
    ///   - maximum: The largest list size; adding past it fails.
    ///   - now: The time recorded as `addedAt` for a new entry.
    /// - Returns: The entry as stored, with the contact's directory record.
    /// - Throws: ``/ParleyCore/ParleyError`` with code `userNotFound` when `contact` is not
    ///   registered, `invalidRequest` when it is `owner`, `tooManyContacts` when the list holds
    ///   `maximum` entries already.
    package func addContact(
        _ contact: UserID,
        to owner: UserID,
        displayName: ContactDisplayName,
        maximum: Int,
        now: Date
    ) throws(ParleyError) -> Contact {
        guard contact != owner else {
            throw ParleyError(code: .invalidRequest, message: "a user cannot be in its own contact list")
        }
        return try write("adding a contact") { db in
            guard try Self.userRow(db, contact) != nil else {
                throw ParleyError(code: .userNotFound, message: "no user has ID \(contact)")
            }
            let exists = try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM contact WHERE owner = ? AND contact = ?)"),
                arguments: [owner.storedValue, contact.storedValue]
            )
            if exists != true {
                let count =
                    try Int.fetchOne(
                        db.cachedStatement(sql: "SELECT COUNT(*) FROM contact WHERE owner = ?"),
                        arguments: [owner.storedValue]
                    ) ?? 0
                guard count < maximum else {
                    throw ParleyError(
                        code: .tooManyContacts,
                        message: "the contact list holds \(count) entries, the maximum is \(maximum)"
                    )
                }
            }
            try db.cachedStatement(
                sql: """
                    INSERT INTO contact (owner, contact, display_rule, custom_name, added_at)
                    VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (owner, contact) DO UPDATE
                    SET display_rule = excluded.display_rule, custom_name = excluded.custom_name
                    """
            )
            .execute(arguments: [
                owner.storedValue, contact.storedValue, Int64(displayName.wireValue), displayName.customName,
                now.storedMilliseconds,
            ])
            return try Self.fetchContacts(db, owner: owner, only: contact)[0]
        }
    }

    /// Changes how a contact's name is shown.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `contactNotFound` when `contact` is not in
    ///   `owner`'s list.
    package func updateContact(
        _ contact: UserID,
        of owner: UserID,
        displayName: ContactDisplayName
    ) throws(ParleyError) -> Contact {
        try write("updating a contact") { db in
            try db.cachedStatement(
                sql: "UPDATE contact SET display_rule = ?, custom_name = ? WHERE owner = ? AND contact = ?"
            )
            .execute(arguments: [
                Int64(displayName.wireValue), displayName.customName, owner.storedValue, contact.storedValue,
            ])
            guard db.changesCount > 0 else { throw Self.notAContact(contact) }
            return try Self.fetchContacts(db, owner: owner, only: contact)[0]
        }
    }

    /// Removes `contact` from `owner`'s list.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `contactNotFound` when it is not there.
    package func removeContact(_ contact: UserID, from owner: UserID) throws(ParleyError) {
        try write("removing a contact") { db in
            try db.cachedStatement(sql: "DELETE FROM contact WHERE owner = ? AND contact = ?")
                .execute(arguments: [owner.storedValue, contact.storedValue])
            guard db.changesCount > 0 else { throw Self.notAContact(contact) }
        }
    }

    /// `owner`'s contact list with each contact's directory record, ordered by user ID.
    package func contacts(of owner: UserID) throws(ParleyError) -> [Contact] {
        try read("reading a contact list") { db in try Self.fetchContacts(db, owner: owner, only: nil) }
    }

    /// The users whose contact lists hold `user`: the ones its presence changes are pushed to.
    package func watchers(of user: UserID) throws(ParleyError) -> [UserID] {
        try read("finding watchers") { db in
            let statement = try db.cachedStatement(sql: "SELECT owner FROM contact WHERE contact = ? ORDER BY owner")
            var owners: [UserID] = []
            let rows = try Row.fetchCursor(statement, arguments: [user.storedValue])
            while let row = try rows.next() { owners.append(try row.userID(0, "contact.owner")) }
            return owners
        }
    }

    /// Records the presence `user` chose; it is shown whenever the user is online, across logons.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `userNotFound` for an unknown user.
    package func setPresenceChoice(_ choice: PresenceChoice, for user: UserID) throws(ParleyError) {
        try write("storing a presence") { db in
            try db.cachedStatement(sql: "UPDATE user SET presence_state = ?, presence_text = ? WHERE user_id = ?")
                .execute(arguments: [Int64(choice.state.wireValue), choice.text, user.storedValue])
            guard db.changesCount > 0 else {
                throw ParleyError(code: .userNotFound, message: "no user has ID \(user)")
            }
        }
    }

    /// The presence each of `users` chose (users that do not exist are left out).
    package func presenceChoices(of users: [UserID]) throws(ParleyError) -> [UserID: PresenceChoice] {
        if users.isEmpty { return [:] }
        return try read("reading presences") { db in
            let statement = try db.cachedStatement(
                sql: """
                    SELECT user_id, presence_state, presence_text FROM user
                    WHERE user_id IN (SELECT value FROM json_each(?))
                    """
            )
            var choices: [UserID: PresenceChoice] = [:]
            let rows = try Row.fetchCursor(statement, arguments: [users.jsonArray])
            while let row = try rows.next() {
                choices[try row.userID(0, "user.user_id")] = try row.presenceChoice(1, "user.presence_state")
            }
            return choices
        }
    }

    /// Records a logon (`isLogon`) or a logoff of `user` at `now`, for the admin's last-seen view.
    package func recordSession(of user: UserID, isLogon: Bool, now: Date) throws(ParleyError) {
        let sql =
            isLogon
            ? "UPDATE user SET last_logon_at = ? WHERE user_id = ?"
            : "UPDATE user SET last_logoff_at = ? WHERE user_id = ?"
        try write("recording a session") { db in
            try db.cachedStatement(sql: sql).execute(arguments: [now.storedMilliseconds, user.storedValue])
        }
    }

    /// When `user` last logged on and off; nil for a time never recorded.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `userNotFound` for an unknown user.
    package func lastSeen(of user: UserID) throws(ParleyError) -> (logon: Date?, logoff: Date?) {
        try read("reading last seen times") { db in
            let statement = try db.cachedStatement(
                sql: "SELECT last_logon_at, last_logoff_at FROM user WHERE user_id = ?"
            )
            guard let row = try Row.fetchOne(statement, arguments: [user.storedValue]) else {
                throw ParleyError(code: .userNotFound, message: "no user has ID \(user)")
            }
            return (try row.dateOrNil(0, "user.last_logon_at"), try row.dateOrNil(1, "user.last_logoff_at"))
        }
    }

    private static func userRow(_ db: Database, _ user: UserID) throws -> Row? {
        try Row.fetchOne(
            db.cachedStatement(sql: "SELECT user_id FROM user WHERE user_id = ?"),
            arguments: [user.storedValue]
        )
    }

    private static func fetchContacts(_ db: Database, owner: UserID, only contact: UserID?) throws -> [Contact] {
        let filter = contact == nil ? "" : " AND contact.contact = ?"
        let statement = try db.cachedStatement(
            sql: """
                SELECT \(userColumns), contact.display_rule, contact.custom_name, contact.added_at
                FROM contact JOIN user ON user.user_id = contact.contact
                WHERE contact.owner = ?\(filter)
                ORDER BY contact.contact
                """
        )
        var arguments: StatementArguments = [owner.storedValue]
        if let contact { arguments += [contact.storedValue] }
        var contacts: [Contact] = []
        let rows = try Row.fetchCursor(statement, arguments: arguments)
        while let row = try rows.next() {
            let info = try decodeUser(row)
            let rule = try row.int64(13, "contact.display_rule")
            let custom = try row.text(14, "contact.custom_name")
            guard let wire = UInt32(exactly: rule),
                let displayName = ContactDisplayName(wireValue: wire, customName: custom)
            else {
                throw ParleyError(code: .storageError, message: "corrupt row: contact.display_rule holds \(rule)")
            }
            contacts.append(
                Contact(
                    userID: info.userID,
                    displayName: displayName,
                    addedAt: try row.date(15, "contact.added_at"),
                    info: info
                )
            )
        }
        return contacts
    }

    private static func notAContact(_ contact: UserID) -> ParleyError {
        ParleyError(code: .contactNotFound, message: "user \(contact) is not in the contact list")
    }
}

extension Row {
    fileprivate func presenceChoice(_ index: Int, _ column: StaticString) throws -> PresenceChoice {
        let value = try int64(index, column)
        guard let wire = UInt32(exactly: value), let state = PresenceState(wireValue: wire), state != .offline else {
            throw ParleyError(code: .storageError, message: "corrupt row: \(column) holds \(value)")
        }
        return PresenceChoice(state: state, text: try text(index + 1, "user.presence_text"))
    }
}
