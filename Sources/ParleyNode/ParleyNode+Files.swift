public import ParleyClient
public import ParleyCore

// File transfers of a node (docs/PROTOCOL.md section 26). They go through the server, with the
// node's server session: direct transfers over a node link (frames 0x0230-0x023F, section 26.9)
// are not built yet. Offers and statuses arrive as `fileOffered` and `transferStatus` events.
extension ParleyNode {
    /// The logged-on server session, which carries file transfers.
    private func transferClient() throws(ParleyError) -> ParleyClient {
        let client = state.withLock { state in state.serverLoggedOn ? state.client : nil }
        guard let client else {
            throw ParleyError(
                code: .notConnected,
                message: "file transfers go through the server, and this node is not logged on there")
        }
        return client
    }

    /// Sends a file to a user through the server (see ``/ParleyClient/ParleyClient/sendFile(at:to:name:id:progress:)``).
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with `notConnected` when the node is not logged on
    ///   to a server, or what the server's transfer answers.
    @discardableResult
    public func sendFile(
        at path: String,
        to recipient: UserID,
        name: String? = nil,
        id: TransferID? = nil,
        progress: @escaping @Sendable (TransferProgress) -> Void = { _ in }
    ) async throws(ParleyError) -> TransferID {
        try await transferClient().sendFile(at: path, to: recipient, name: name, id: id, progress: progress)
    }

    /// Saves a file offered to this node's user into `directory` (see
    /// ``/ParleyClient/ParleyClient/receiveFile(_:into:progress:)``); returns its path.
    @discardableResult
    public func receiveFile(
        _ offer: FileOffer,
        into directory: String,
        progress: @escaping @Sendable (TransferProgress) -> Void = { _ in }
    ) async throws(ParleyError) -> String {
        try await transferClient().receiveFile(offer, into: directory, progress: progress)
    }

    /// Declines a file offered to this node's user.
    public func declineFile(_ offer: FileOffer, reason: String = "") async throws(ParleyError) {
        try await transferClient().declineFile(offer, reason: reason)
    }

    /// Gives up a file offered to this node's user, also one partly received (and deletes its
    /// partial file in `directory`, if given).
    public func cancelFile(_ offer: FileOffer, partialIn directory: String? = nil, reason: String = "")
        async throws(ParleyError)
    {
        try await transferClient().cancelFile(offer, partialIn: directory, reason: reason)
    }

    /// Gives up a transfer this node's user sent.
    public func cancelTransfer(_ id: TransferID, reason: String = "") async throws(ParleyError) {
        try await transferClient().cancelTransfer(id, reason: reason)
    }

    /// The transfers the server holds that this node's user sent or receives.
    public func transfers() async throws(ParleyError) -> [HeldTransfer] {
        try await transferClient().transfers()
    }
}
