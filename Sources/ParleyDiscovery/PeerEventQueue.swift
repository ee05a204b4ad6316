import ParleyCore

/// The pending peer events between a discovery backend and its consumer, coalesced per node.
///
/// At most one entry is pending per node ID: a new event for a node that already has one is
/// merged into it, keeping what the consumer must learn (up / changed / down relative to what it
/// has already been told) and the latest state. So the queue never loses the final state of a
/// peer, and its size is bounded by the number of distinct node IDs (and by ``limit``).
package struct PeerEventQueue: Sendable {
    private struct Entry: Sendable {
        /// Whether the consumer's view of the node was "up" before this entry.
        var consumerSawUp: Bool
        /// The node's latest state; nil: down.
        var latest: Peer?
    }

    private var order: [NodeID] = []
    private var entries: [NodeID: Entry] = [:]
    /// The most node IDs with a pending event; events for further node IDs are refused.
    package let limit: Int

    package init(limit: Int) {
        self.limit = max(1, limit)
    }

    package var count: Int { entries.count }
    package var isEmpty: Bool { entries.isEmpty }

    /// Adds `event`, merging it with a pending event for the same node.
    /// - Returns: false if the event was refused because ``limit`` node IDs are pending already.
    package mutating func push(_ event: PeerEvent) -> Bool {
        let nodeID = event.nodeID
        let latest: Peer? =
            switch event {
            case .up(let peer), .changed(let peer): peer
            case .down: nil
            }
        if var entry = entries[nodeID] {
            entry.latest = latest
            if !entry.consumerSawUp && latest == nil {
                // up then down before the consumer looked: it never needs to know
                entries[nodeID] = nil
                order.removeAll { $0 == nodeID }
            } else {
                entries[nodeID] = entry
            }
            return true
        }
        guard entries.count < limit else { return false }
        let consumerSawUp: Bool =
            switch event {
            case .up: false
            case .changed, .down: true
            }
        entries[nodeID] = Entry(consumerSawUp: consumerSawUp, latest: latest)
        order.append(nodeID)
        return true
    }

    /// The oldest pending event, merged.
    package mutating func pop() -> PeerEvent? {
        while !order.isEmpty {
            let nodeID = order.removeFirst()
            guard let entry = entries.removeValue(forKey: nodeID) else { continue }
            switch (entry.consumerSawUp, entry.latest) {
            case (false, let peer?): return .up(peer)
            case (true, let peer?): return .changed(peer)
            case (true, nil): return .down(nodeID)
            case (false, nil): continue  // never stored; kept for exhaustiveness
            }
        }
        return nil
    }
}
