public import ParleyCore
import ParleyLink
import ParleyNodeStore

extension ParleyNode {
    /// Forgets the key pinned for a user or a node, so the next key presented for it is pinned
    /// anew: for a user who moved to a new node (or a node given a new key) while no server can
    /// vouch for the move. Peers refused for that key are dialled again at once.
    ///
    /// - Returns: Whether a key was pinned.
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/storageError``
    ///   when the registry cannot be changed.
    @discardableResult
    public func unpin(_ subject: Recipient) async throws(ParleyError) -> Bool {
        let unpinned = try await registry.run { registry throws(ParleyError) in try Self.unpin(subject, in: registry) }
        state.withLock { $0.links.forgetOwnRefusals() }
        return unpinned
    }

    /// Forgets a pinned key in the registry of the node kept in `dataDirectory`, whether that node
    /// runs (in any process) or not; see ``unpin(_:)``. A running node in another process dials
    /// peers it refused again once its refusal backoff expires.
    ///
    /// - Returns: Whether a key was pinned.
    @discardableResult
    public static func unpin(_ subject: Recipient, dataDirectory: String) throws(ParleyError) -> Bool {
        try unpin(subject, in: existingRegistry(dataDirectory: dataDirectory))
    }

    private static func unpin(_ subject: Recipient, in registry: NodeRegistry) throws(ParleyError) -> Bool {
        switch subject {
        case .user(let user): try registry.unpin(user: user)
        case .node(let node): try registry.unpin(nodeID: node)
        }
    }

    /// The command named in the errors that refuse a changed key.
    static func unpinCommand(dataDirectory: String) -> String {
        "parley unpin --data \(dataDirectory)"
    }
}
