public import ParleyCore

/// Another Parley node seen on the LAN, merged from all its advertisements.
///
/// One node seen on several interfaces, over IPv4 and IPv6, or under several instance names is
/// one peer with several addresses.
public struct Peer: Hashable, Sendable {
    public var nodeID: NodeID
    public var userID: UInt32?
    public var userName: String?
    public var server: String?
    public var status: String?
    /// Where the node accepts links, sorted (interface, host, port); never empty.
    public var addresses: [PeerAddress]
    /// The instance name of the most recently resolved advertisement (for display only).
    public var instanceName: String
    /// The advertiser's TXT record version (`pv`).
    public var recordVersion: Int

    public init(
        nodeID: NodeID,
        userID: UInt32? = nil,
        userName: String? = nil,
        server: String? = nil,
        status: String? = nil,
        addresses: [PeerAddress],
        instanceName: String,
        recordVersion: Int = TXTRecord.currentVersion
    ) {
        self.nodeID = nodeID
        self.userID = userID
        self.userName = userName
        self.server = server
        self.status = status
        self.addresses = addresses
        self.instanceName = instanceName
        self.recordVersion = recordVersion
    }
}

/// One address of a peer.
public struct PeerAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// A numeric address. IPv6 link-local addresses carry their scope ("fe80::1%eth0"), so they
    /// can be passed to a connect call as they are.
    public var host: String
    public var port: UInt16
    /// The name of the local interface the advertisement arrived on ("eth0").
    public var interface: String

    public init(host: String, port: UInt16, interface: String) {
        self.host = host
        self.port = port
        self.interface = interface
    }

    public static func < (lhs: PeerAddress, rhs: PeerAddress) -> Bool {
        (lhs.interface, lhs.host, lhs.port) < (rhs.interface, rhs.host, rhs.port)
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// A change in the set of peers seen on the LAN.
public enum PeerEvent: Hashable, Sendable {
    /// A node ID seen for the first time (or again after `.down`).
    case up(Peer)
    /// A known peer's fields or addresses changed; carries the whole new state.
    case changed(Peer)
    /// The node's last advertisement was withdrawn, expired or could no longer be resolved.
    case down(NodeID)

    public var nodeID: NodeID {
        switch self {
        case .up(let peer), .changed(let peer): peer.nodeID
        case .down(let nodeID): nodeID
        }
    }
}
