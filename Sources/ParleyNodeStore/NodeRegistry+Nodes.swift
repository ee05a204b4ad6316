package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

extension NodeRegistry {
    /// What the registry remembers about a node.
    package struct CachedNode: Sendable, Hashable {
        package var nodeID: NodeID
        /// The key the node was last reported with. Not verified: ``NodeRegistry/checkKey(nodeID:publicKey:vouchedByServer:now:)``
        /// checks a key a peer presents against the pinned one.
        package var publicKey: [UInt8]
        /// The user the node was last reported to belong to, if any.
        package var userID: UserID?
        package var userName: String?
        /// The last reported "host:port" addresses, in the order reported. Scoped IPv6 link-local
        /// addresses ("[fe80::1%eth0]:4711") are kept exactly as given.
        package var addresses: [String]
        /// Where the last recorded fact about this node came from.
        package var source: FactSource
        /// Whether the stored key and user came from the server; facts from other sources then
        /// no longer replace them.
        package var isVouchedByServer: Bool
        /// The latest time any source reported this node.
        package var lastSeen: Date

        package init(
            nodeID: NodeID,
            publicKey: [UInt8],
            userID: UserID?,
            userName: String?,
            addresses: [String],
            source: FactSource,
            isVouchedByServer: Bool,
            lastSeen: Date
        ) {
            self.nodeID = nodeID
            self.publicKey = publicKey
            self.userID = userID
            self.userName = userName
            self.addresses = addresses
            self.source = source
            self.isVouchedByServer = isVouchedByServer
            self.lastSeen = lastSeen
        }
    }

    /// The node and key the server vouched for a user at its last logon.
    package struct VouchedKey: Sendable, Hashable {
        package var nodeID: NodeID
        package var publicKey: [UInt8]
        /// When the server's answer was recorded.
        package var vouchedAt: Date

        package init(nodeID: NodeID, publicKey: [UInt8], vouchedAt: Date) {
            self.nodeID = nodeID
            self.publicKey = publicKey
            self.vouchedAt = vouchedAt
        }
    }

    /// The most addresses a node record may carry.
    package static let maximumAddressCount = 16
    /// The longest address, in UTF-8 bytes (a scoped IPv6 address with a port fits many times).
    package static let maximumAddressLength = 256

    /// The columns ``decodeCachedNode(_:)`` reads, in its order.
    private static let cachedNodeColumns = """
        node_id, public_key, user_id, user_name, addresses, source, server_vouched, last_seen
        """

    /// Records what a source says about a node, creating or updating its cache entry.
    ///
    /// The same provenance rule as for users: a fact from the server replaces the stored key and
    /// user and marks them server-vouched; a fact from another source replaces them only while
    /// they are not server-vouched. A nil `userID` or `userName` keeps the stored one. Addresses
    /// are network facts that go stale: a non-empty list from any source replaces the stored
    /// one, an empty list keeps it. ``CachedNode/lastSeen`` never moves backwards.
    ///
    /// A fact from the server that names a user also becomes that user's ``VouchedKey`` (unless
    /// a later one is recorded already).
    ///
    /// - Returns: The entry as stored.
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidRequest`` for an empty node ID
    ///   or key, a user name longer than ``UserInfo/maximumFieldLength``, more than
    ///   ``maximumAddressCount`` addresses or one longer than ``maximumAddressLength`` (facts from
    ///   the LAN are untrusted), ``ParleyError/Code/storageError`` otherwise.
    @discardableResult
    package func record(
        node id: NodeID,
        publicKey: [UInt8],
        userID: UserID?,
        userName: String?,
        addresses: [String],
        source: FactSource,
        seenAt: Date
    ) throws(ParleyError) -> CachedNode {
        guard !publicKey.isEmpty else {
            throw ParleyError(code: .invalidRequest, message: "a node needs a public key")
        }
        let nodeID = id.description
        if let userName, userName.count > UserInfo.maximumFieldLength {
            throw ParleyError(
                code: .invalidRequest,
                message: "the user name of node \(nodeID) is longer than \(UserInfo.maximumFieldLength) characters"
            )
        }
        guard addresses.count <= Self.maximumAddressCount,
            addresses.allSatisfy({ !$0.isEmpty && $0.utf8.count <= Self.maximumAddressLength })
        else {
            throw ParleyError(
                code: .invalidRequest,
                message: """
                    node \(nodeID) has more than \(Self.maximumAddressCount) addresses, or an empty one or one \
                    longer than \(Self.maximumAddressLength) bytes
                    """
            )
        }
        let addressList: String? = addresses.isEmpty ? nil : try Self.encodeAddresses(addresses)
        let vouched = source == .server
        let seen = seenAt.storedMilliseconds
        return try write("caching a node") { db in
            let existing = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT server_vouched, last_seen FROM cached_node WHERE node_id = ?"),
                arguments: [nodeID]
            )
            if let existing {
                let wasVouched = try existing.bool(0, "cached_node.server_vouched")
                let lastSeen = max(try existing.int64(1, "cached_node.last_seen"), seen)
                if vouched || !wasVouched {
                    try db.cachedStatement(
                        sql: """
                            UPDATE cached_node SET
                                public_key = ?, user_id = ifnull(?, user_id), user_name = ifnull(?, user_name),
                                addresses = ifnull(?, addresses), source = ?, server_vouched = ?, last_seen = ?
                            WHERE node_id = ?
                            """
                    ).execute(arguments: [
                        Data(publicKey), userID?.storedValue, userName, addressList, source.rawValue,
                        vouched || wasVouched, lastSeen, nodeID,
                    ])
                } else {
                    try db.cachedStatement(
                        sql: """
                            UPDATE cached_node SET addresses = ifnull(?, addresses), source = ?, last_seen = ?
                            WHERE node_id = ?
                            """
                    ).execute(arguments: [addressList, source.rawValue, lastSeen, nodeID])
                }
            } else {
                try db.cachedStatement(
                    sql: """
                        INSERT INTO cached_node (
                            node_id, public_key, user_id, user_name, addresses, source, server_vouched, last_seen
                        ) VALUES (?, ?, ?, ?, ifnull(?, '[]'), ?, ?, ?)
                        """
                ).execute(arguments: [
                    nodeID, Data(publicKey), userID?.storedValue, userName, addressList, source.rawValue, vouched,
                    seen,
                ])
            }
            if vouched, let userID {
                try db.cachedStatement(
                    sql: """
                        INSERT INTO vouched_key (user_id, node_id, public_key, vouched_at) VALUES (?, ?, ?, ?)
                        ON CONFLICT (user_id) DO UPDATE SET
                            node_id = excluded.node_id, public_key = excluded.public_key,
                            vouched_at = excluded.vouched_at
                        WHERE excluded.vouched_at >= vouched_key.vouched_at
                        """
                ).execute(arguments: [userID.storedValue, nodeID, Data(publicKey), seen])
            }
            let select = try db.cachedStatement(
                sql: "SELECT \(Self.cachedNodeColumns) FROM cached_node WHERE node_id = ?"
            )
            guard let row = try Row.fetchOne(select, arguments: [nodeID]) else {
                throw ParleyError(code: .storageError, message: "the cached node \(nodeID) vanished")
            }
            return try Self.decodeCachedNode(row)
        }
    }

    /// The cache entry of the node with this ID, or nil.
    package func node(_ nodeID: NodeID) throws(ParleyError) -> CachedNode? {
        try read("reading a cached node") { db in
            let statement = try db.cachedStatement(
                sql: "SELECT \(Self.cachedNodeColumns) FROM cached_node WHERE node_id = ?"
            )
            guard let row = try Row.fetchOne(statement, arguments: [nodeID.description]) else { return nil }
            return try Self.decodeCachedNode(row)
        }
    }

    /// The cached nodes last reported to belong to `userID`, most recently seen first.
    package func nodes(forUser userID: UserID) throws(ParleyError) -> [CachedNode] {
        try read("reading a user's cached nodes") { db in
            let statement = try db.cachedStatement(
                sql: """
                    SELECT \(Self.cachedNodeColumns) FROM cached_node WHERE user_id = ?
                    ORDER BY last_seen DESC, node_id
                    """
            )
            var nodes: [CachedNode] = []
            let rows = try Row.fetchCursor(statement, arguments: [userID.storedValue])
            while let row = try rows.next() {
                nodes.append(try Self.decodeCachedNode(row))
            }
            return nodes
        }
    }

    /// The node and key the server last vouched for `userID`, or nil if it never did: a peer
    /// claiming to be this user must hold this key, also while the server is unreachable.
    package func vouchedKey(forUser userID: UserID) throws(ParleyError) -> VouchedKey? {
        try read("reading a vouched key") { db in
            let statement = try db.cachedStatement(
                sql: "SELECT node_id, public_key, vouched_at FROM vouched_key WHERE user_id = ?"
            )
            guard let row = try Row.fetchOne(statement, arguments: [userID.storedValue]) else { return nil }
            return VouchedKey(
                nodeID: try row.nodeID(0, "vouched_key.node_id"),
                publicKey: try row.bytes(1, "vouched_key.public_key"),
                vouchedAt: try row.date(2, "vouched_key.vouched_at")
            )
        }
    }

    private static func encodeAddresses(_ addresses: [String]) throws(ParleyError) -> String {
        do {
            return String(decoding: try JSONEncoder().encode(addresses), as: UTF8.self)
        } catch {
            throw ParleyError(code: .internalError, message: "cannot encode node addresses", cause: error)
        }
    }

    /// Decodes the columns of ``cachedNodeColumns``.
    private static func decodeCachedNode(_ row: Row) throws -> CachedNode {
        let json = try row.text(4, "cached_node.addresses")
        let addresses: [String]
        do {
            addresses = try JSONDecoder().decode([String].self, from: Data(json.utf8))
        } catch {
            throw ParleyError(
                code: .storageError,
                message: "corrupt row: cached_node.addresses holds no JSON array of strings",
                cause: error
            )
        }
        return CachedNode(
            nodeID: try row.nodeID(0, "cached_node.node_id"),
            publicKey: try row.bytes(1, "cached_node.public_key"),
            userID: try row.nullableUserID(2, "cached_node.user_id"),
            userName: try row.nullableText(3, "cached_node.user_name"),
            addresses: addresses,
            source: try row.factSource(5, "cached_node.source"),
            isVouchedByServer: try row.bool(6, "cached_node.server_vouched"),
            lastSeen: try row.date(7, "cached_node.last_seen")
        )
    }
}
