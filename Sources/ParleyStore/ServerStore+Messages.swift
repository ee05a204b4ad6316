import GRDB
public import ParleyCore

public import struct Foundation.Date

extension ServerStore {
    /// Stores a batch of messages in one write transaction (group commit).
    ///
    /// Each body is stored once; each recipient gets a delivery with a global, strictly increasing
    /// sequence. A (recipient, sender, message ID) the store already has, pending or acknowledged
    /// within the de-duplication window, is not stored again: its delivery comes back with
    /// `duplicate` set.
    ///
    /// - Returns: Per message in order, per recipient in order, what was stored.
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/recipientNotFound`` when a recipient
    ///   is not a registered user (nothing of the batch is stored then).
    public func storeMessages(_ batch: [NewMessage], now: Date) throws(ParleyError) -> [[StoredDelivery]] {
        if batch.isEmpty { return [] }
        let storedAt = now.storedMilliseconds
        return try write("storing messages") { db in
            // NULL for an empty blob: GRDB binds empty Data as NULL.
            let insertMessage = try db.cachedStatement(
                sql: """
                    INSERT INTO message (
                        sender, message_id, recipients, is_text, body, sent_at, stored_at, wants_receipt,
                        pending_count
                    ) VALUES (?, ?, ifnull(?, x''), ?, ifnull(?, x''), ?, ?, ?, ?)
                    """
            )
            let insertDelivery = try db.cachedStatement(
                sql: """
                    INSERT INTO delivery (recipient, sender, message_id, message) VALUES (?, ?, ?, ?)
                    ON CONFLICT (recipient, sender, message_id) DO NOTHING
                    """
            )
            var results: [[StoredDelivery]] = []
            results.reserveCapacity(batch.count)
            for message in batch {
                if message.recipients.isEmpty {
                    results.append([])
                    continue
                }
                // Insert the body first, counting every delivery as new: the usual case. Duplicates
                // (rare) correct the count afterwards.
                try insertMessage.execute(arguments: [
                    message.sender.storedValue, message.messageID.storedValue, message.allRecipients.storedBlob,
                    message.isText, message.storedBody, message.sentAt.storedMilliseconds, storedAt,
                    message.wantsReceipt, message.recipients.count,
                ])
                let messageRow = db.lastInsertedRowID
                var deliveries: [StoredDelivery] = []
                deliveries.reserveCapacity(message.recipients.count)
                var newCount = 0
                for recipient in message.recipients {
                    do {
                        try insertDelivery.execute(arguments: [
                            recipient.storedValue, message.sender.storedValue, message.messageID.storedValue,
                            messageRow,
                        ])
                    } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_FOREIGNKEY {
                        throw ParleyError(
                            code: .recipientNotFound,
                            message: "recipient \(recipient) is not a registered user",
                            cause: error
                        )
                    }
                    if db.changesCount > 0 {
                        newCount += 1
                        deliveries.append(
                            StoredDelivery(
                                recipient: recipient,
                                sequence: db.lastInsertedRowID,
                                duplicate: false,
                                alreadyAcknowledged: false
                            )
                        )
                    } else {
                        deliveries.append(try Self.existingDelivery(db, recipient: recipient, message: message))
                    }
                }
                if newCount == 0 {
                    try db.cachedStatement(sql: "DELETE FROM message WHERE id = ?").execute(arguments: [messageRow])
                } else if newCount < message.recipients.count {
                    try db.cachedStatement(sql: "UPDATE message SET pending_count = ? WHERE id = ?")
                        .execute(arguments: [newCount, messageRow])
                }
                results.append(deliveries)
            }
            return results
        }
    }

    /// The delivery that made a new one a duplicate.
    private static func existingDelivery(
        _ db: Database,
        recipient: UserID,
        message: NewMessage
    ) throws -> StoredDelivery {
        let select = try db.cachedStatement(
            sql: """
                SELECT sequence, acknowledged_at IS NOT NULL FROM delivery
                WHERE recipient = ? AND sender = ? AND message_id = ?
                """
        )
        let arguments: StatementArguments = [
            recipient.storedValue, message.sender.storedValue, message.messageID.storedValue,
        ]
        guard let row = try Row.fetchOne(select, arguments: arguments) else {
            throw ParleyError(
                code: .storageError,
                message: "a delivery of message \(message.messageID) to \(recipient) conflicted but cannot be found"
            )
        }
        return StoredDelivery(
            recipient: recipient,
            sequence: try row.int64(0, "delivery.sequence"),
            duplicate: true,
            alreadyAcknowledged: try row.bool(1, "delivery.acknowledged_at IS NOT NULL")
        )
    }

    /// The unacknowledged messages for `recipient` with a sequence above `sequence`, ascending by
    /// sequence, at most `limit` of them.
    ///
    /// Pass 0 to start, then the last sequence received to page on.
    public func pendingMessages(
        for recipient: UserID,
        after sequence: Int64,
        limit: Int
    ) throws(ParleyError) -> [PendingMessage] {
        if limit <= 0 { return [] }
        return try read("reading pending messages") { db in
            let statement = try db.cachedStatement(
                sql: """
                    SELECT d.sequence, d.message_id, d.sender, m.id, m.recipients, m.is_text, m.body,
                        m.sent_at, m.stored_at, m.wants_receipt
                    FROM delivery AS d LEFT JOIN message AS m ON m.id = d.message
                    WHERE d.recipient = ? AND d.acknowledged_at IS NULL AND d.sequence > ?
                    ORDER BY d.sequence
                    LIMIT ?
                    """
            )
            var messages: [PendingMessage] = []
            let rows = try Row.fetchCursor(statement, arguments: [recipient.storedValue, sequence, limit])
            while let row = try rows.next() {
                let sequence = try row.int64(0, "delivery.sequence")
                guard try row.decode(DatabaseValue.self, atIndex: 3) != .null else {
                    throw ParleyError(
                        code: .storageError,
                        message: "corrupt row: pending delivery \(sequence) has no message"
                    )
                }
                messages.append(
                    PendingMessage(
                        sequence: sequence,
                        messageID: try row.messageID(1, "delivery.message_id"),
                        sender: try row.userID(2, "delivery.sender"),
                        recipients: try row.userIDs(4, "message.recipients"),
                        isText: try row.bool(5, "message.is_text"),
                        body: try row.bytes(6, "message.body"),
                        sentAt: try row.date(7, "message.sent_at"),
                        storedAt: try row.date(8, "message.stored_at"),
                        wantsReceipt: try row.bool(9, "message.wants_receipt")
                    )
                )
            }
            return messages
        }
    }

    /// How many messages `recipient` has not acknowledged.
    public func pendingMessageCount(for recipient: UserID) throws(ParleyError) -> Int {
        try read("counting pending messages") { db in
            let statement = try db.cachedStatement(
                sql: "SELECT COUNT(*) FROM delivery WHERE recipient = ? AND acknowledged_at IS NULL"
            )
            return try Int.fetchOne(statement, arguments: [recipient.storedValue]) ?? 0
        }
    }

    /// Marks deliveries to `recipient` acknowledged, in one transaction.
    ///
    /// Unknown and already acknowledged references are ignored. A message whose last pending
    /// delivery is acknowledged loses its body; the small delivery row stays as a tombstone that
    /// rejects resends until ``pruneAcknowledged(now:)`` removes it.
    ///
    /// - Returns: The deliveries this call acknowledged, in the order given.
    public func acknowledge(
        recipient: UserID,
        messages: [(sender: UserID, messageID: MessageID)],
        now: Date
    ) throws(ParleyError) -> [AcknowledgedMessage] {
        try acknowledge([(recipient: recipient, messages: messages)], now: now)
    }

    /// Acknowledges the deliveries of several recipients in one transaction (group commit);
    /// otherwise the same as ``acknowledge(recipient:messages:now:)``.
    public func acknowledge(
        _ batch: [(recipient: UserID, messages: [(sender: UserID, messageID: MessageID)])],
        now: Date
    ) throws(ParleyError) -> [AcknowledgedMessage] {
        if batch.allSatisfy({ $0.messages.isEmpty }) { return [] }
        let acknowledgedAt = now.storedMilliseconds
        return try write("acknowledging messages") { db in
            let find = try db.cachedStatement(
                sql: """
                    SELECT d.sequence, m.id, m.wants_receipt
                    FROM delivery AS d LEFT JOIN message AS m ON m.id = d.message
                    WHERE d.recipient = ? AND d.sender = ? AND d.message_id = ? AND d.acknowledged_at IS NULL
                    """
            )
            let mark = try db.cachedStatement(
                sql: "UPDATE delivery SET acknowledged_at = ?, message = NULL WHERE sequence = ?"
            )
            let release = try db.cachedStatement(
                sql: "UPDATE message SET pending_count = pending_count - 1 WHERE id = ?"
            )
            let deleteIfDone = try db.cachedStatement(
                sql: "DELETE FROM message WHERE id = ? AND pending_count <= 0"
            )
            var acknowledged: [AcknowledgedMessage] = []
            for (recipient, messages) in batch {
                for (sender, messageID) in messages {
                    let arguments: StatementArguments = [
                        recipient.storedValue, sender.storedValue, messageID.storedValue,
                    ]
                    guard let row = try Row.fetchOne(find, arguments: arguments) else { continue }
                    let sequence = try row.int64(0, "delivery.sequence")
                    let messageRow = try row.decode(DatabaseValue.self, atIndex: 1)
                    guard messageRow != .null else {
                        throw ParleyError(
                            code: .storageError,
                            message: "corrupt row: pending delivery \(sequence) has no message"
                        )
                    }
                    let wantsReceipt = try row.bool(2, "message.wants_receipt")
                    try mark.execute(arguments: [acknowledgedAt, sequence])
                    try release.execute(arguments: [messageRow])
                    try deleteIfDone.execute(arguments: [messageRow])
                    acknowledged.append(
                        AcknowledgedMessage(
                            sender: sender,
                            messageID: messageID,
                            recipient: recipient,
                            wantsReceipt: wantsReceipt,
                            acknowledgedAt: Date(storedMilliseconds: acknowledgedAt)
                        )
                    )
                }
            }
            return acknowledged
        }
    }

    /// Deletes the tombstones of deliveries acknowledged before `now` minus the configured
    /// ``Configuration/deduplicationWindow``: resends of those messages are no longer recognized.
    ///
    /// - Returns: How many tombstones were deleted.
    public func pruneAcknowledged(now: Date) throws(ParleyError) -> Int {
        let (cutoff, overflow) = now.storedMilliseconds.subtractingReportingOverflow(
            configuration.deduplicationWindow.storedMilliseconds
        )
        if overflow { return 0 }
        return try write("pruning acknowledged messages") { db in
            let delete = try db.cachedStatement(sql: "DELETE FROM delivery WHERE acknowledged_at < ?")
            try delete.execute(arguments: [cutoff])
            return db.changesCount
        }
    }
}
