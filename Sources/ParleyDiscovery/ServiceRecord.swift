public import ParleyCore

/// What a node advertises on the LAN.
///
/// Identity is ``nodeID``, carried in the TXT record. The ``instanceName`` is only a readable
/// label: DNS-SD renames it on collision ("name #2"), so two nodes may use the same one.
public struct ServiceRecord: Hashable, Sendable {
    /// Maximum length of ``instanceName`` in UTF-8 bytes (one DNS label).
    public static let maximumInstanceNameLength = 63

    /// The preferred DNS-SD instance name (1...63 UTF-8 bytes); may be renamed on collision.
    public var instanceName: String
    /// The TCP port on which the node accepts links.
    public var port: UInt16
    public var nodeID: NodeID
    /// The user on this node, when one is logged on.
    public var userID: UInt32?
    public var userName: String?
    /// The server the user belongs to (an opaque label such as a host name).
    public var server: String?
    /// A short presence token, such as "online" or "away".
    public var status: String?

    public init(
        instanceName: String,
        port: UInt16,
        nodeID: NodeID,
        userID: UInt32? = nil,
        userName: String? = nil,
        server: String? = nil,
        status: String? = nil
    ) {
        self.instanceName = instanceName
        self.port = port
        self.nodeID = nodeID
        self.userID = userID
        self.userName = userName
        self.server = server
        self.status = status
    }

    /// Checks what the TXT encoding does not: the instance name.
    /// - Throws: ``DiscoveryError/Code/invalidRecord``.
    public func validate() throws(DiscoveryError) {
        let length = instanceName.utf8.count
        guard length > 0, length <= Self.maximumInstanceNameLength else {
            throw DiscoveryError(
                code: .invalidRecord,
                message: "instance name must be 1...\(Self.maximumInstanceNameLength) UTF-8 bytes, got \(length)"
            )
        }
        _ = try TXTRecord(self).encoded()
    }
}
