package import Foundation
import GRDB
package import ParleyCore
import ParleySQLite

/// One transfer the server holds (docs/PROTOCOL.md section 26); its bytes live in a spool file
/// beside the database, the row says what they are and how far the transfer has come.
package struct StoredTransfer: Hashable, Sendable {
    /// Where a transfer is.
    package enum Phase: Int, Sendable, Hashable {
        /// The sender is uploading it.
        case uploading = 0
        /// The whole file is held and verified; offered to the recipient.
        case ready = 1
        /// Ended (``StoredTransfer/outcome``); kept until the sender is told.
        case closed = 2
    }

    package var sender: UserID
    package var id: TransferID
    package var recipient: UserID
    package var name: String
    /// The length the sender declared at the start (0 for a stream).
    package var declaredSize: UInt64
    package var isStream: Bool
    /// The final length, once ready.
    package var size: UInt64?
    /// The verified SHA-256, once ready.
    package var sha256: [UInt8]?
    package var phase: Phase
    package var outcome: TransferOutcome?
    package var reason: String
    package var createdAt: Date
    package var readyAt: Date?
    package var closedAt: Date?

    package init(
        sender: UserID,
        id: TransferID,
        recipient: UserID,
        name: String,
        declaredSize: UInt64,
        isStream: Bool,
        createdAt: Date
    ) {
        self.sender = sender
        self.id = id
        self.recipient = recipient
        self.name = name
        self.declaredSize = declaredSize
        self.isStream = isStream
        self.size = nil
        self.sha256 = nil
        self.phase = .uploading
        self.outcome = nil
        self.reason = ""
        self.createdAt = createdAt
        self.readyAt = nil
        self.closedAt = nil
    }

    /// The bytes this transfer counts against its recipient's quota.
    package var heldBytes: UInt64 { phase == .closed ? 0 : size ?? declaredSize }

    /// Whether `other` asks for the same transfer as this one (a resume), not another one that
    /// reuses its ID.
    package func matches(_ other: StoredTransfer) -> Bool {
        recipient == other.recipient && name == other.name && isStream == other.isStream
            && (isStream || declaredSize == other.declaredSize)
    }
}

extension ServerStore {
    private static let transferColumns = """
        sender, transfer_id, recipient, name, declared_size, is_stream, size, sha256, phase, outcome, reason,
        created_at, ready_at, closed_at
        """

    /// Records a new transfer, or returns the one held with the same sender and ID (a resume).
    ///
    /// - Parameters:
    ///   - maximumFileSize: the largest declared size accepted.
    ///   - quota: the most bytes held for one recipient, this transfer included.
    /// - Returns: the held transfer and whether it was new.
    /// - Throws: ``/ParleyCore/ParleyError`` with code `userNotFound` (no such recipient),
    ///   `fileTooLarge`, `transferQuotaExceeded`, `invalidRequest` (the ID names another
    ///   transfer), `storageError`.
    package func startTransfer(
        _ transfer: StoredTransfer,
        maximumFileSize: UInt64,
        quota: UInt64
    ) throws(ParleyError) -> (transfer: StoredTransfer, isNew: Bool) {
        try write("starting a transfer") { db in
            if let held = try Self.transfer(sender: transfer.sender, id: transfer.id, in: db) {
                guard held.matches(transfer) else {
                    throw ParleyError(
                        code: .invalidRequest,
                        message: "transfer \(transfer.id) exists with another recipient, name or size")
                }
                return (held, false)
            }
            let exists = try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM user WHERE user_id = ?)"),
                arguments: [transfer.recipient.storedValue]
            )
            guard exists == true, transfer.recipient != transfer.sender, transfer.recipient != .server else {
                throw ParleyError(code: .userNotFound, message: "no user with ID \(transfer.recipient) can take files")
            }
            guard maximumFileSize > 0, transfer.declaredSize <= maximumFileSize else {
                throw ParleyError(
                    code: .fileTooLarge,
                    message:
                        "the file has \(transfer.declaredSize) bytes; this server takes at most \(maximumFileSize)")
            }
            let held = try Self.heldBytes(for: transfer.recipient, in: db)
            guard held + transfer.declaredSize <= quota else {
                throw ParleyError(
                    code: .transferQuotaExceeded,
                    message:
                        "user \(transfer.recipient) has \(held) bytes waiting; \(transfer.declaredSize) more would exceed the quota of \(quota)"
                )
            }
            try db.cachedStatement(
                sql: """
                    INSERT INTO transfer (\(Self.transferColumns))
                    VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, 0, 0, '', ?, NULL, NULL)
                    """
            )
            .execute(arguments: [
                transfer.sender.storedValue, Int64(bitPattern: transfer.id.rawValue), transfer.recipient.storedValue,
                transfer.name, Int64(clamping: transfer.declaredSize), transfer.isStream,
                transfer.createdAt.storedMilliseconds,
            ])
            return (transfer, true)
        }
    }

    /// The transfer `id` of `sender`, if the server holds it.
    package func transfer(sender: UserID, id: TransferID) throws(ParleyError) -> StoredTransfer? {
        try read("reading a transfer") { db in try Self.transfer(sender: sender, id: id, in: db) }
    }

    /// The bytes held for `recipient` (uploads in progress at their declared size).
    package func heldTransferBytes(for recipient: UserID) throws(ParleyError) -> UInt64 {
        try read("counting held transfer bytes") { db in try Self.heldBytes(for: recipient, in: db) }
    }

    /// Marks an upload as complete: its final length and verified hash.
    ///
    /// - Throws: `transferNotFound` when it is gone, `storageError`.
    package func markTransferReady(
        sender: UserID, id: TransferID, size: UInt64, sha256: [UInt8], at date: Date
    ) throws(ParleyError) {
        try write("marking a transfer ready") { db in
            try db.cachedStatement(
                sql: """
                    UPDATE transfer SET phase = 1, size = ?, sha256 = ?, ready_at = ?
                    WHERE sender = ? AND transfer_id = ? AND phase = 0
                    """
            )
            .execute(arguments: [
                Int64(clamping: size), Data(sha256), date.storedMilliseconds, sender.storedValue,
                Int64(bitPattern: id.rawValue),
            ])
            guard db.changesCount == 1 else {
                throw ParleyError(code: .transferNotFound, message: "transfer \(id) of user \(sender) is not uploading")
            }
        }
    }

    /// Ends a transfer: it stays, closed, until its sender is told (``takeClosedTransfers(of:)``).
    ///
    /// - Returns: the transfer as it was before, or nil when it was not held or closed already.
    @discardableResult
    package func closeTransfer(
        sender: UserID, id: TransferID, outcome: TransferOutcome, reason: String, at date: Date
    ) throws(ParleyError) -> StoredTransfer? {
        try write("closing a transfer") { db in
            guard let held = try Self.transfer(sender: sender, id: id, in: db), held.phase != .closed else {
                return nil
            }
            try db.cachedStatement(
                sql: """
                    UPDATE transfer SET phase = 2, outcome = ?, reason = ?, closed_at = ?
                    WHERE sender = ? AND transfer_id = ?
                    """
            )
            .execute(arguments: [
                outcome.wireValue, reason, date.storedMilliseconds, sender.storedValue, Int64(bitPattern: id.rawValue),
            ])
            return held
        }
    }

    /// Takes out (deletes and returns) the closed transfers of `sender`, oldest first: their
    /// senders are being told how they ended.
    package func takeClosedTransfers(of sender: UserID) throws(ParleyError) -> [StoredTransfer] {
        try write("taking closed transfers") { db in
            let closed = try Self.transfers(where: "sender = ? AND phase = 2", [sender.storedValue], in: db)
            try db.cachedStatement(sql: "DELETE FROM transfer WHERE sender = ? AND phase = 2")
                .execute(arguments: [sender.storedValue])
            return closed
        }
    }

    /// Forgets one transfer.
    package func forgetTransfer(sender: UserID, id: TransferID) throws(ParleyError) {
        try write("forgetting a transfer") { db in
            try db.cachedStatement(sql: "DELETE FROM transfer WHERE sender = ? AND transfer_id = ?")
                .execute(arguments: [sender.storedValue, Int64(bitPattern: id.rawValue)])
        }
    }

    /// The transfers ready for `recipient`, oldest first: offered at each of its logons.
    package func readyTransfers(for recipient: UserID) throws(ParleyError) -> [StoredTransfer] {
        try read("reading offered transfers") { db in
            try Self.transfers(where: "recipient = ? AND phase = 1", [recipient.storedValue], in: db)
        }
    }

    /// The transfers `user` sent or receives that are not closed, oldest first; every transfer
    /// held when `user` is nil (the admin's list).
    package func heldTransfers(involving user: UserID?) throws(ParleyError) -> [StoredTransfer] {
        try read("listing transfers") { db in
            if let user {
                return try Self.transfers(
                    where: "(sender = ? OR recipient = ?) AND phase < 2", [user.storedValue, user.storedValue], in: db)
            }
            return try Self.transfers(where: "phase < 2", [], in: db)
        }
    }

    /// The open transfers whose retention ended: ready before `readyBefore`, or still uploading
    /// and started before it.
    package func expiredTransfers(before date: Date) throws(ParleyError) -> [StoredTransfer] {
        try read("finding expired transfers") { db in
            try Self.transfers(
                where: "phase < 2 AND COALESCE(ready_at, created_at) < ?", [date.storedMilliseconds], in: db)
        }
    }

    // MARK: Rows

    private static func heldBytes(for recipient: UserID, in db: Database) throws -> UInt64 {
        let open = try transfers(where: "recipient = ? AND phase < 2", [recipient.storedValue], in: db)
        return open.reduce(0) { $0 + $1.heldBytes }
    }

    private static func transfer(sender: UserID, id: TransferID, in db: Database) throws -> StoredTransfer? {
        try transfers(
            where: "sender = ? AND transfer_id = ?", [sender.storedValue, Int64(bitPattern: id.rawValue)], in: db
        ).first
    }

    private static func transfers(
        where condition: String, _ arguments: StatementArguments, in db: Database
    ) throws -> [StoredTransfer] {
        let rows = try Row.fetchCursor(
            db.cachedStatement(
                sql: "SELECT \(transferColumns) FROM transfer WHERE \(condition) ORDER BY created_at, transfer_id"),
            arguments: arguments
        )
        var transfers: [StoredTransfer] = []
        while let row = try rows.next() {
            transfers.append(try transfer(from: row))
        }
        return transfers
    }

    private static func transfer(from row: Row) throws -> StoredTransfer {
        func size(_ index: Int, _ column: StaticString) throws -> UInt64 {
            let value = try row.int64(index, column)
            guard let size = UInt64(exactly: value) else { throw Row.corrupt(column, value.databaseValue) }
            return size
        }
        func optional<T>(_ index: Int, _ read: (Int) throws -> T) throws -> T? {
            let value = try row.decode(DatabaseValue.self, atIndex: index)
            return value.isNull ? nil : try read(index)
        }
        var transfer = StoredTransfer(
            sender: try row.userID(0, "transfer.sender"),
            id: TransferID(UInt64(bitPattern: try row.int64(1, "transfer.transfer_id"))),
            recipient: try row.userID(2, "transfer.recipient"),
            name: try row.text(3, "transfer.name"),
            declaredSize: try size(4, "transfer.declared_size"),
            isStream: try row.bool(5, "transfer.is_stream"),
            createdAt: try row.date(11, "transfer.created_at")
        )
        transfer.size = try optional(6) { try size($0, "transfer.size") }
        transfer.sha256 = try optional(7) { try row.bytes($0, "transfer.sha256") }
        let phase = try row.int64(8, "transfer.phase")
        guard let known = StoredTransfer.Phase(rawValue: Int(truncatingIfNeeded: phase)) else {
            throw Row.corrupt("transfer.phase", phase.databaseValue)
        }
        transfer.phase = known
        let outcome = try row.int64(9, "transfer.outcome")
        transfer.outcome = TransferOutcome(wireValue: Int(truncatingIfNeeded: outcome))
        if known == .closed, transfer.outcome == nil { throw Row.corrupt("transfer.outcome", outcome.databaseValue) }
        transfer.reason = try row.text(10, "transfer.reason")
        transfer.readyAt = try optional(12) { try row.date($0, "transfer.ready_at") }
        transfer.closedAt = try optional(13) { try row.date($0, "transfer.closed_at") }
        if known == .ready, transfer.size == nil || transfer.sha256?.count != 32 {
            throw ParleyError(code: .storageError, message: "corrupt row: transfer \(transfer.id) has no size or hash")
        }
        return transfer
    }
}
