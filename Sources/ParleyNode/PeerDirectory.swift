import ParleyCore
import ParleyDiscovery

/// The peers a node knows, from discovery and from its direct links, and the events their
/// changes produce. Pure: the node feeds it facts and publishes the events it returns.
///
/// Discovery says a peer exists; links say it is alive. A peer goes down when its last
/// advertisement is withdrawn while it has no link, or when its last link closed and a redial
/// failed, even if discovery still lists it (mDNS keeps a crashed peer's records for a long time).
struct PeerDirectory: Sendable {
    struct Entry: Sendable {
        var nodeID: ParleyNode.NodeID
        var advertised: Peer?
        var helloUser: UserID?
        var helloName: String?
        var links = 0
        var online = false
        /// The last link closed and the redial failed: only a new link, or a fresh discovery
        /// announcement, brings the peer back.
        var linkDied = false
        /// A peerUp was published and no peerDown since.
        var announced = false

        var info: ParleyNode.PeerInfo {
            ParleyNode.PeerInfo(
                nodeID: nodeID,
                userID: helloUser ?? advertised?.userID.map(UserID.init(rawValue:)),
                name: helloName ?? advertised?.userName ?? "",
                addresses: advertised?.addresses.map(\.description) ?? [],
                status: online ? (advertised?.status ?? "online") : "offline",
                linked: links > 0,
                online: online
            )
        }
    }

    private(set) var entries: [ParleyNode.NodeID: Entry] = [:]

    var peers: [ParleyNode.PeerInfo] {
        entries.values.map(\.info).sorted { $0.nodeID < $1.nodeID }
    }

    /// The online node of `user`, preferring a linked one.
    func node(ofUser user: UserID) -> ParleyNode.NodeID? {
        let candidates = entries.values.filter { $0.online && $0.info.userID == user }
        return (candidates.first { $0.links > 0 } ?? candidates.first)?.nodeID
    }

    func addresses(of nodeID: ParleyNode.NodeID) -> [String] {
        entries[nodeID]?.advertised?.addresses.map(\.description) ?? []
    }

    func isLinked(_ nodeID: ParleyNode.NodeID) -> Bool { (entries[nodeID]?.links ?? 0) > 0 }

    mutating func advertised(_ peer: Peer, as nodeID: ParleyNode.NodeID, isNew: Bool) -> [ParleyNode.Event] {
        var entry = entries[nodeID] ?? Entry(nodeID: nodeID)
        entry.advertised = peer
        // A fresh announcement (.up) is a sign of life; a changed record is not, once a link died.
        if isNew { entry.linkDied = false }
        if !entry.linkDied || entry.links > 0 { entry.online = true }
        return publish(&entry)
    }

    mutating func withdrawn(_ nodeID: ParleyNode.NodeID) -> [ParleyNode.Event] {
        guard var entry = entries[nodeID] else { return [] }
        entry.advertised = nil
        if entry.links == 0 {
            entries[nodeID] = nil
            return entry.announced ? [.peerDown(nodeID)] : []
        }
        return publish(&entry)
    }

    mutating func linkUp(_ nodeID: ParleyNode.NodeID, user: UserID?, name: String) -> [ParleyNode.Event] {
        var entry = entries[nodeID] ?? Entry(nodeID: nodeID)
        entry.links += 1
        entry.linkDied = false
        entry.helloUser = user
        entry.helloName = name.isEmpty ? nil : name
        entry.online = true
        return publish(&entry)
    }

    /// A link closed. Returns whether it was the last one (then the caller redials, and reports
    /// the outcome with ``redialFailed(_:)`` or ``linkUp(_:user:name:)``).
    mutating func linkDown(_ nodeID: ParleyNode.NodeID) -> (events: [ParleyNode.Event], lastLink: Bool) {
        guard var entry = entries[nodeID] else { return ([], false) }
        entry.links = max(entry.links - 1, 0)
        let last = entry.links == 0
        entries[nodeID] = entry
        return (last && entry.announced ? [.peerChanged(entry.info)] : [], last)
    }

    mutating func redialFailed(_ nodeID: ParleyNode.NodeID) -> [ParleyNode.Event] {
        guard var entry = entries[nodeID], entry.links == 0 else { return [] }
        let wasAnnounced = entry.announced
        entry.online = false
        entry.linkDied = true
        entry.announced = false
        if entry.advertised == nil {
            entries[nodeID] = nil
        } else {
            entries[nodeID] = entry
        }
        return wasAnnounced ? [.peerDown(nodeID)] : []
    }

    private mutating func publish(_ entry: inout Entry) -> [ParleyNode.Event] {
        defer { entries[entry.nodeID] = entry }
        guard entry.online else { return [] }
        if entry.announced {
            if let old = entries[entry.nodeID], old.info == entry.info { return [] }
            return [.peerChanged(entry.info)]
        }
        entry.announced = true
        return [.peerUp(entry.info)]
    }
}
