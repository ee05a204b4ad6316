package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

extension NodeRegistry {
    /// What ``NodeRegistry/checkKey(nodeID:publicKey:vouchedByServer:now:)`` found.
    package enum KeyCheck: Sendable, Hashable {
        /// No key was pinned: this one is now (trust on first use).
        case pinnedNow
        /// The key is the pinned one.
        case matches
        /// The server vouched for this key and it replaced a different pinned one, `previousKey`.
        /// Worth a log line at notice level: the peer's key changed with the server's consent.
        case replacedByServer(previousKey: [UInt8])
    }

    /// A key pinned for a node or a user.
    package struct PinnedKey: Sendable, Hashable {
        /// The node that presented the key.
        package var nodeID: NodeID
        package var publicKey: [UInt8]
        package var pinnedAt: Date
        /// Whether the server vouched for the key (at pinning or since).
        package var isVouchedByServer: Bool
        /// The key the current one replaced with the server's consent, and when.
        package var replacedKey: [UInt8]?
        package var replacedAt: Date?

        package init(
            nodeID: NodeID,
            publicKey: [UInt8],
            pinnedAt: Date,
            isVouchedByServer: Bool,
            replacedKey: [UInt8]? = nil,
            replacedAt: Date? = nil
        ) {
            self.nodeID = nodeID
            self.publicKey = publicKey
            self.pinnedAt = pinnedAt
            self.isVouchedByServer = isVouchedByServer
            self.replacedKey = replacedKey
            self.replacedAt = replacedAt
        }
    }

    /// The registry's keys for pins: one namespace for nodes, one for users.
    private enum PinSubject {
        case node(NodeID)
        case user(UserID)

        var key: String {
            switch self {
            case .node(let nodeID): "node:\(nodeID)"
            case .user(let userID): "user:\(userID.rawValue)"
            }
        }

        /// "node <ID>" or "user <ID>": in messages, and as the unpin command's arguments.
        var shown: String {
            switch self {
            case .node(let nodeID): "node \(nodeID)"
            case .user(let userID): "user \(userID)"
            }
        }
    }

    /// Checks the key a node presents against the one pinned for its node ID.
    ///
    /// The first key seen for a node ID is pinned (trust on first use). A different key later is
    /// refused, loudly, unless the server vouches for it: then it replaces the pinned one.
    ///
    /// - Parameters:
    ///   - nodeID: The node's ID.
    ///   - publicKey: The key the node proved it holds.
    ///   - vouchedByServer: Whether the server vouched for this key (it matches the node key the
    ///     server returned in the user's info).
    ///   - now: Recorded as the pin's or the replacement's time.
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/pinnedKeyMismatch`` when the key is
    ///   not the pinned one and the server did not vouch for it; its message names both
    ///   fingerprints and how to unpin. Nothing is changed then.
    @discardableResult
    package func checkKey(
        nodeID: NodeID,
        publicKey: [UInt8],
        vouchedByServer: Bool,
        now: Date
    ) throws(ParleyError) -> KeyCheck {
        try checkKey(.node(nodeID), nodeID: nodeID, publicKey: publicKey, vouchedByServer: vouchedByServer, now: now)
    }

    /// Checks the key a peer claiming to be `userID` presents against the one pinned for that
    /// user, with the rules of ``checkKey(nodeID:publicKey:vouchedByServer:now:)``.
    ///
    /// This is the check that catches a peer on a new node claiming an existing user while no
    /// server can vouch for it. A user who moves to another node legitimately gets through once
    /// the server vouches for the new key, or after an explicit ``unpin(user:)``.
    @discardableResult
    package func checkKey(
        forUser userID: UserID,
        nodeID: NodeID,
        publicKey: [UInt8],
        vouchedByServer: Bool,
        now: Date
    ) throws(ParleyError) -> KeyCheck {
        try checkKey(.user(userID), nodeID: nodeID, publicKey: publicKey, vouchedByServer: vouchedByServer, now: now)
    }

    /// The key pinned for a node ID, or nil.
    package func pinnedKey(nodeID: NodeID) throws(ParleyError) -> PinnedKey? {
        try pinnedKey(.node(nodeID))
    }

    /// The key pinned for a user, or nil.
    package func pinnedKey(forUser userID: UserID) throws(ParleyError) -> PinnedKey? {
        try pinnedKey(.user(userID))
    }

    /// Forgets the key pinned for a node ID: the next key it presents is pinned anew.
    ///
    /// - Returns: Whether a key was pinned.
    @discardableResult
    package func unpin(nodeID: NodeID) throws(ParleyError) -> Bool {
        try unpin(.node(nodeID))
    }

    /// Forgets the key pinned for a user: the next key presented for it is pinned anew.
    ///
    /// - Returns: Whether a key was pinned.
    @discardableResult
    package func unpin(user userID: UserID) throws(ParleyError) -> Bool {
        try unpin(.user(userID))
    }

    private func checkKey(
        _ subject: PinSubject,
        nodeID: NodeID,
        publicKey: [UInt8],
        vouchedByServer: Bool,
        now: Date
    ) throws(ParleyError) -> KeyCheck {
        guard !publicKey.isEmpty else {
            throw ParleyError(code: .invalidRequest, message: "\(subject.shown) presented an empty key")
        }
        let unpinCommand = configuration.unpinCommand
        return try write("checking a pinned key") { db in
            let select = try db.cachedStatement(
                sql: "SELECT public_key, vouched_by_server, node_id FROM pinned_key WHERE subject = ?"
            )
            guard let row = try Row.fetchOne(select, arguments: [subject.key]) else {
                try db.cachedStatement(
                    sql: """
                        INSERT INTO pinned_key (subject, node_id, public_key, pinned_at, vouched_by_server)
                        VALUES (?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [
                    subject.key, nodeID.description, Data(publicKey), now.storedMilliseconds, vouchedByServer,
                ])
                return .pinnedNow
            }
            let pinned = try row.bytes(0, "pinned_key.public_key")
            let wasVouched = try row.bool(1, "pinned_key.vouched_by_server")
            let pinnedNode = try row.text(2, "pinned_key.node_id")
            if pinned == publicKey {
                if vouchedByServer && !wasVouched {
                    try db.cachedStatement(sql: "UPDATE pinned_key SET vouched_by_server = 1 WHERE subject = ?")
                        .execute(arguments: [subject.key])
                }
                return .matches
            }
            guard vouchedByServer else {
                let message: String
                switch subject {
                case .user(let user):
                    // Locally, a user who moved to a new node and a node posing as the user look alike.
                    message = """
                        user \(user)'s key changed: node \(nodeID) (\(Self.fingerprint(of: publicKey))) speaks \
                        for user \(user), whose key is pinned to node \(pinnedNode) (\(Self.fingerprint(of: pinned))); \
                        refusing. If user \(user) moved to a new node or key, run `\(unpinCommand) user \(user)`; \
                        if not, another node claims user \(user)
                        """
                case .node:
                    message = """
                        the key of \(subject.shown) changed: pinned \(Self.fingerprint(of: pinned)), \
                        presented \(Self.fingerprint(of: publicKey)); refusing (if this is expected, unpin it \
                        with `\(unpinCommand) \(subject.shown)`)
                        """
                }
                throw ParleyError(code: .pinnedKeyMismatch, message: message)
            }
            try db.cachedStatement(
                sql: """
                    UPDATE pinned_key SET
                        node_id = ?, public_key = ?, pinned_at = ?, vouched_by_server = 1, replaced_key = ?,
                        replaced_at = ?
                    WHERE subject = ?
                    """
            ).execute(arguments: [
                nodeID.description, Data(publicKey), now.storedMilliseconds, Data(pinned), now.storedMilliseconds,
                subject.key,
            ])
            return .replacedByServer(previousKey: pinned)
        }
    }

    private func pinnedKey(_ subject: PinSubject) throws(ParleyError) -> PinnedKey? {
        try read("reading a pinned key") { db in
            let statement = try db.cachedStatement(
                sql: """
                    SELECT node_id, public_key, pinned_at, vouched_by_server, replaced_key, replaced_at
                    FROM pinned_key WHERE subject = ?
                    """
            )
            guard let row = try Row.fetchOne(statement, arguments: [subject.key]) else { return nil }
            return PinnedKey(
                nodeID: try row.nodeID(0, "pinned_key.node_id"),
                publicKey: try row.bytes(1, "pinned_key.public_key"),
                pinnedAt: try row.date(2, "pinned_key.pinned_at"),
                isVouchedByServer: try row.bool(3, "pinned_key.vouched_by_server"),
                replacedKey: try row.nullableBytes(4, "pinned_key.replaced_key"),
                replacedAt: try row.nullableDate(5, "pinned_key.replaced_at")
            )
        }
    }

    private func unpin(_ subject: PinSubject) throws(ParleyError) -> Bool {
        try write("unpinning a key") { db in
            try db.cachedStatement(sql: "DELETE FROM pinned_key WHERE subject = ?").execute(arguments: [subject.key])
            return db.changesCount > 0
        }
    }
}
