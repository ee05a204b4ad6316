public import Foundation
public import ParleyCore
import ParleyServerStore

// The admin's view of held file transfers (docs/PROTOCOL.md section 26): the same operations
// are served on the admin socket as `files` and `delete-file` (docs/ADMIN.md).
extension ParleyServer {
    /// A transfer the server holds, as the admin sees it.
    public struct HeldFile: Sendable, Hashable, Codable {
        public var id: TransferID
        public var sender: UserID
        public var recipient: UserID
        public var name: String
        /// The final length once uploaded; the declared one (0 for a stream) before.
        public var size: UInt64
        /// The bytes on the server's disk.
        public var heldBytes: UInt64
        /// True once the whole file is uploaded, verified and offered to the recipient.
        public var isReady: Bool
        public var createdAt: Date
        /// When the retention sweep deletes it if the recipient has not fetched it.
        public var expiresAt: Date

        /// Makes an entry.
        public init(
            id: TransferID, sender: UserID, recipient: UserID, name: String, size: UInt64, heldBytes: UInt64,
            isReady: Bool, createdAt: Date, expiresAt: Date
        ) {
            self.id = id
            self.sender = sender
            self.recipient = recipient
            self.name = name
            self.size = size
            self.heldBytes = heldBytes
            self.isReady = isReady
            self.createdAt = createdAt
            self.expiresAt = expiresAt
        }
    }

    /// Every transfer the server holds (uploading or waiting for its recipient), oldest first.
    public func heldFiles() async throws(ParleyError) -> [HeldFile] {
        let context = try requireRunningContext()
        return try await offLoopWork(context) { context throws(ParleyError) in
            try context.store.heldTransfers(involving: nil).map { transfer in
                let info = context.transferInfo(transfer)
                return HeldFile(
                    id: transfer.id, sender: transfer.sender, recipient: transfer.recipient, name: transfer.name,
                    size: info.size, heldBytes: info.offset, isReady: transfer.phase == .ready,
                    createdAt: transfer.createdAt,
                    expiresAt: Date(timeIntervalSince1970: Double(info.expiresAtMs) / 1000)
                )
            }
        }
    }

    /// Deletes a held transfer: its bytes go, its sender (now or at its next logon) and its
    /// recipient (if it was offered and is online) are told DELETED.
    ///
    /// - Returns: false when the server does not hold it.
    @discardableResult
    public func deleteHeldFile(
        sender: UserID, id: TransferID, reason: String = "deleted by the server's admin"
    ) async throws(ParleyError) -> Bool {
        let context = try requireRunningContext()
        return try await offLoopWork(context) { context throws(ParleyError) in
            guard let held = try context.store.transfer(sender: sender, id: id), held.phase != .closed else {
                return false
            }
            try context.finishTransfer(held, outcome: .deleted, reason: reason, by: nil)
            return true
        }
    }

    private func offLoopWork<T: Sendable>(
        _ context: ServerContext, _ work: @escaping @Sendable (ServerContext) throws(ParleyError) -> T
    ) async throws(ParleyError) -> T {
        do {
            return try await context.blockingPool.runIfActive { try work(context) }
        } catch {
            throw ServerConnectionHandler.parleyError(error)
        }
    }
}
