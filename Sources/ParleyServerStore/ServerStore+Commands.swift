package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

/// A fire-and-forget command kept for an offline recipient (docs/PROTOCOL.md section 24.5).
package struct StoredCommand: Hashable, Sendable {
    package var sender: UserID
    package var name: String
    package var payload: [UInt8]
    package var storedAt: Date

    package init(sender: UserID, name: String, payload: [UInt8], storedAt: Date) {
        self.sender = sender
        self.name = name
        self.payload = payload
        self.storedAt = storedAt
    }
}

extension ServerStore {
    /// Keeps `command` for `recipient` until its next logon.
    ///
    /// - Parameter maximum: the most commands one recipient may have waiting.
    /// - Throws: ``/ParleyCore/ParleyError`` with code `userNotFound` when `recipient` is not
    ///   registered, `recipientOffline` when it has `maximum` commands waiting already.
    package func storeCommand(_ command: StoredCommand, for recipient: UserID, maximum: Int) throws(ParleyError) {
        try write("storing a command") { db in
            let exists = try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM user WHERE user_id = ?)"),
                arguments: [recipient.storedValue]
            )
            guard exists == true else {
                throw ParleyError(code: .userNotFound, message: "no user has ID \(recipient)")
            }
            let count =
                try Int.fetchOne(
                    db.cachedStatement(sql: "SELECT COUNT(*) FROM stored_command WHERE recipient = ?"),
                    arguments: [recipient.storedValue]
                ) ?? 0
            guard count < maximum else {
                throw ParleyError(
                    code: .recipientOffline,
                    message: "user \(recipient) is offline and has \(count) stored commands, the maximum"
                )
            }
            try db.cachedStatement(
                sql: """
                    INSERT INTO stored_command (recipient, sender, name, payload, stored_at)
                    VALUES (?, ?, ?, ?, ?)
                    """
            )
            .execute(arguments: [
                recipient.storedValue, command.sender.storedValue, command.name, Data(command.payload),
                command.storedAt.storedMilliseconds,
            ])
        }
    }

    /// Takes out (deletes and returns) `recipient`'s stored commands, oldest first.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `storageError`, also for a corrupt row
    ///   (then nothing is taken out).
    package func takeStoredCommands(for recipient: UserID) throws(ParleyError) -> [StoredCommand] {
        try write("taking stored commands") { db in
            let rows = try Row.fetchCursor(
                db.cachedStatement(
                    sql: "SELECT sender, name, payload, stored_at FROM stored_command WHERE recipient = ? ORDER BY id"
                ),
                arguments: [recipient.storedValue]
            )
            var commands: [StoredCommand] = []
            while let row = try rows.next() {
                commands.append(
                    StoredCommand(
                        sender: try row.userID(0, "stored_command.sender"),
                        name: try row.text(1, "stored_command.name"),
                        payload: try row.bytes(2, "stored_command.payload"),
                        storedAt: try row.date(3, "stored_command.stored_at")
                    )
                )
            }
            try db.cachedStatement(sql: "DELETE FROM stored_command WHERE recipient = ?")
                .execute(arguments: [recipient.storedValue])
            return commands
        }
    }
}
