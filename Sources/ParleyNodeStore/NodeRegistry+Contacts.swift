package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

extension NodeRegistry {
    /// Replaces the cached contact list with `contacts`: the list as the server gave it last.
    package func replaceCachedContacts(_ contacts: [Contact], at date: Date = Date()) throws(ParleyError) {
        let rows = try Self.encode(contacts)
        try write("caching the contact list") { db in
            try db.execute(sql: "DELETE FROM cached_contact")
            for (user, contact) in rows {
                try db.cachedStatement(
                    sql: "INSERT INTO cached_contact (user_id, contact, cached_at) VALUES (?, ?, ?)"
                ).execute(arguments: [user, contact, date.storedMilliseconds])
            }
        }
    }

    /// Adds `contact` to the cached list, or replaces the cached entry of its user.
    package func cacheContact(_ contact: Contact, at date: Date = Date()) throws(ParleyError) {
        let rows = try Self.encode([contact])
        try write("caching a contact") { db in
            for (user, contact) in rows {
                try db.cachedStatement(
                    sql: """
                        INSERT INTO cached_contact (user_id, contact, cached_at) VALUES (?, ?, ?)
                        ON CONFLICT (user_id) DO UPDATE SET contact = excluded.contact, cached_at = excluded.cached_at
                        """
                ).execute(arguments: [user, contact, date.storedMilliseconds])
            }
        }
    }

    /// Removes `user` from the cached list (nothing happens when it is not there).
    package func removeCachedContact(_ user: UserID) throws(ParleyError) {
        try write("removing a cached contact") { db in
            try db.cachedStatement(sql: "DELETE FROM cached_contact WHERE user_id = ?").execute(arguments: [
                user.storedValue
            ])
        }
    }

    /// The cached contact list, by user ID. A row that cannot be read (a damaged file, a newer
    /// version's format) is left out, not fatal: the next fetch from the server replaces it.
    package func cachedContacts() throws(ParleyError) -> [Contact] {
        let rows = try read("reading the cached contact list") { db in
            try Row.fetchAll(db, sql: "SELECT user_id, contact FROM cached_contact ORDER BY user_id").map {
                row -> (Int64, Data?) in (row["user_id"], row["contact"])
            }
        }
        let decoder = JSONDecoder()
        return rows.compactMap { user, data in
            guard let data, let contact = try? decoder.decode(Contact.self, from: data),
                contact.userID.storedValue == user
            else { return nil }
            return contact
        }
    }

    private static func encode(_ contacts: [Contact]) throws(ParleyError) -> [(Int64, Data)] {
        let encoder = JSONEncoder()
        do {
            return try contacts.map { ($0.userID.storedValue, try encoder.encode($0)) }
        } catch {
            throw ParleyError(code: .internalError, message: "cannot encode a contact for the cache", cause: error)
        }
    }
}
