package import ParleyCore

/// Merges DNS-SD service instances into peers keyed by node ID: pure state, no I/O.
///
/// A browser reports each service once per interface and protocol, and the same node may also
/// appear under several instance names (after a rename). Each resolved instance is filed under
/// the node ID from its TXT record; a peer is up while at least one instance of its node is
/// known. This node's own ID is never reported.
package struct PeerTable: Sendable {
    /// One browse result: where it was seen and under which name.
    package struct InstanceKey: Hashable, Sendable, CustomStringConvertible {
        package var interfaceIndex: Int32
        package var isIPv6: Bool
        package var name: String
        package var domain: String

        package init(interfaceIndex: Int32, isIPv6: Bool, name: String, domain: String) {
            self.interfaceIndex = interfaceIndex
            self.isIPv6 = isIPv6
            self.name = name
            self.domain = domain
        }

        package var description: String {
            "\"\(name)\" (if \(interfaceIndex) \(isIPv6 ? "IPv6" : "IPv4") \(domain))"
        }
    }

    private struct Instance: Sendable {
        var record: TXTRecord
        var address: PeerAddress
        /// Order of resolution; the newest instance of a node supplies its fields.
        var serial: UInt64
        var stale = false
    }

    package let ownNodeID: NodeID
    /// The most peers tracked at once; instances of further nodes are refused.
    package let maximumPeers: Int
    /// How many instances were refused because ``maximumPeers`` was reached.
    package private(set) var refusedCount = 0

    private var instances: [InstanceKey: Instance] = [:]
    private var peers: [NodeID: Peer] = [:]
    private var serial: UInt64 = 0

    package init(ownNodeID: NodeID, maximumPeers: Int) {
        self.ownNodeID = ownNodeID
        self.maximumPeers = max(1, maximumPeers)
    }

    package var peerCount: Int { peers.count }
    package var instanceCount: Int { instances.count }
    package func peer(_ nodeID: NodeID) -> Peer? { peers[nodeID] }

    /// An instance resolved (first time or again, e.g. after a TXT change).
    package mutating func resolved(_ key: InstanceKey, record: TXTRecord, address: PeerAddress) -> [PeerEvent] {
        guard record.nodeID != ownNodeID else {
            return removed(key)  // our own service, possibly under another interface or name
        }
        let previousNode = instances[key]?.record.nodeID
        if peers[record.nodeID] == nil, peers.count >= maximumPeers {
            refusedCount += 1
            return removed(key)
        }
        serial += 1
        instances[key] = Instance(record: record, address: address, serial: serial)
        var events: [PeerEvent] = []
        if let previousNode, previousNode != record.nodeID, let event = refresh(previousNode) {
            events.append(event)  // the name now belongs to another node
        }
        if let event = refresh(record.nodeID) { events.append(event) }
        return events
    }

    /// An instance went away (browser removal, or it can no longer be resolved).
    package mutating func removed(_ key: InstanceKey) -> [PeerEvent] {
        guard let instance = instances.removeValue(forKey: key) else { return [] }
        return refresh(instance.record.nodeID).map { [$0] } ?? []
    }

    /// Marks every instance as unconfirmed, e.g. when the connection to the daemon was lost.
    package mutating func markAllStale() {
        for key in instances.keys { instances[key]?.stale = true }
    }

    /// The browser reported `key` again: it is confirmed (its data stays until re-resolved).
    package mutating func confirm(_ key: InstanceKey) {
        instances[key]?.stale = false
    }

    /// Removes the instances not confirmed since ``markAllStale()``.
    package mutating func sweepStale() -> [PeerEvent] {
        let staleKeys = instances.filter { $0.value.stale }.map(\.key)
        return staleKeys.flatMap { removed($0) }
    }

    /// Removes everything: every known peer goes down.
    package mutating func removeAll() -> [PeerEvent] {
        instances.removeAll()
        let nodeIDs = peers.keys.sorted()
        peers.removeAll()
        return nodeIDs.map { .down($0) }
    }

    /// Recomputes one node's peer from its instances and says what changed.
    private mutating func refresh(_ nodeID: NodeID) -> PeerEvent? {
        let mine = instances.filter { $0.value.record.nodeID == nodeID }
        guard let (newestKey, newest) = mine.max(by: { $0.value.serial < $1.value.serial }) else {
            return peers.removeValue(forKey: nodeID) == nil ? nil : .down(nodeID)
        }
        let peer = Peer(
            nodeID: nodeID,
            userID: newest.record.userID,
            userName: newest.record.userName,
            server: newest.record.server,
            status: newest.record.status,
            addresses: Set(mine.values.map(\.address)).sorted(),
            instanceName: newestKey.name,
            recordVersion: newest.record.version
        )
        guard let old = peers.updateValue(peer, forKey: nodeID) else { return .up(peer) }
        return old == peer ? nil : .changed(peer)
    }
}
