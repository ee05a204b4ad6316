package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

extension ServerStore {
    /// Stores the hash of a newly issued resumption token, and prunes the expired ones.
    ///
    /// - Parameters:
    ///   - tokenHash: SHA-256 of the token; the token itself is never stored.
    ///   - user: The user the token logs on.
    ///   - expiresAt: After this the token is refused.
    ///   - now: The current time, for pruning.
    package func storeResumptionToken(
        hash tokenHash: [UInt8],
        for user: UserID,
        expiresAt: Date,
        now: Date
    ) throws(ParleyError) {
        try write("storing a resumption token") { db in
            try db.cachedStatement(sql: "DELETE FROM resumption_token WHERE expires_at <= ?")
                .execute(arguments: [now.storedMilliseconds])
            try db.cachedStatement(
                sql: "INSERT INTO resumption_token (token_hash, user_id, expires_at) VALUES (?, ?, ?)"
            )
            .execute(arguments: [Data(tokenHash), user.storedValue, expiresAt.storedMilliseconds])
        }
    }

    /// Redeems a resumption token and stores its successor in the same transaction.
    ///
    /// The presented token is deleted whether or not it is valid for `user`, so it is redeemed
    /// at most once, even by concurrent logons, and a leaked token cannot be probed against
    /// other user IDs.
    ///
    /// - Parameters:
    ///   - tokenHash: SHA-256 of the presented token.
    ///   - user: The user the logon names.
    ///   - nextHash: SHA-256 of the token that replaces it, stored only if the presented one
    ///     was valid.
    ///   - expiresAt: When the replacement expires.
    ///   - now: The current time.
    /// - Returns: true if the token was known, belonged to `user` and had not expired.
    package func redeemResumptionToken(
        hash tokenHash: [UInt8],
        for user: UserID,
        replacingWith nextHash: [UInt8],
        expiresAt: Date,
        now: Date
    ) throws(ParleyError) -> Bool {
        try write("redeeming a resumption token") { db in
            let select = try db.cachedStatement(
                sql: "SELECT token_hash, user_id, expires_at FROM resumption_token WHERE token_hash = ?"
            )
            guard let row = try Row.fetchOne(select, arguments: [Data(tokenHash)]) else { return false }
            try db.cachedStatement(sql: "DELETE FROM resumption_token WHERE token_hash = ?")
                .execute(arguments: [Data(tokenHash)])
            let stored = Data.fromDatabaseValue(row[0] as DatabaseValue) ?? Data()
            let owner = try row.userID(1, "resumption_token.user_id")
            let expires = try row.date(2, "resumption_token.expires_at")
            guard Self.constantTimeEquals(stored, Data(tokenHash)), owner == user, expires > now else {
                return false
            }
            try db.cachedStatement(
                sql: "INSERT INTO resumption_token (token_hash, user_id, expires_at) VALUES (?, ?, ?)"
            )
            .execute(arguments: [Data(nextHash), user.storedValue, expiresAt.storedMilliseconds])
            try db.cachedStatement(sql: "DELETE FROM resumption_token WHERE expires_at <= ?")
                .execute(arguments: [now.storedMilliseconds])
            return true
        }
    }

    /// Revokes every resumption token of `user` (a password change, a log-off).
    package func revokeResumptionTokens(for user: UserID) throws(ParleyError) {
        try write("revoking resumption tokens") { db in
            try db.cachedStatement(sql: "DELETE FROM resumption_token WHERE user_id = ?")
                .execute(arguments: [user.storedValue])
        }
    }

    /// How many resumption tokens are stored, expired ones included until they are pruned.
    package func resumptionTokenCount() throws(ParleyError) -> Int {
        try read("counting resumption tokens") { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM resumption_token") ?? 0
        }
    }

    private static func constantTimeEquals(_ lhs: Data, _ rhs: Data) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for (left, right) in zip(lhs, rhs) { difference |= left ^ right }
        return difference == 0
    }
}
