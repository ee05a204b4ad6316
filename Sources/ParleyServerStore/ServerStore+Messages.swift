import GRDB
package import ParleyCore
import ParleySQLite

package import struct Foundation.Date

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
    package func storeMessages(_ batch: [NewMessage], now: Date) throws(ParleyError) -> [[StoredDelivery]] {
        if batch.isEmpty { return [] }
        return try write("storing messages") { db in try Self.storeMessages(batch, now: now, in: db) }
    }

    /// Acknowledges `acknowledgements`, then stores `messages`, in one write transaction: one
    /// commit (one write of the WAL) for a whole round of the message path's group commit.
    ///
    /// The same as ``acknowledge(_:now:)`` followed by ``storeMessages(_:now:)``, except that a
    /// recipient who is not a registered user is left out of its message (it gets no delivery,
    /// and the rest of the batch is stored), and that nothing of either is written if one fails.
    package func acknowledgeAndStore(
        acknowledgements: [(recipient: UserID, messages: [(sender: UserID, messageID: MessageID)])],
        messages: [NewMessage],
        now: Date
    ) throws(ParleyError) -> (acknowledged: [AcknowledgedMessage], stored: [[StoredDelivery]]) {
        try write("acknowledging and storing messages") { db in
            let acknowledged = try Self.acknowledge(acknowledgements, now: now, in: db)
            guard !messages.isEmpty else { return (acknowledged, []) }
            let existing = try Self.existingUserIDs(among: Array(Set(messages.flatMap(\.recipients))), in: db)
            var known = messages
            for index in known.indices where !known[index].recipients.allSatisfy(existing.contains) {
                known[index].recipients = known[index].recipients.filter(existing.contains)
            }
            return (acknowledged, try Self.storeMessages(known, now: now, in: db))
        }
    }

    private static func storeMessages(_ batch: [NewMessage], now: Date, in db: Database) throws -> [[StoredDelivery]] {
        let storedAt = now.storedMilliseconds
        // The message path's hottest statements, bound in place (RawStatement).
        let insertMessage = try RawStatement(
            db,
            sql: """
                INSERT INTO message (
                    sender, message_id, recipients, is_text, body, sent_at, stored_at, wants_receipt,
                    pending_count
                ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        )
        let insertDelivery = try RawStatement(
            db,
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
            insertMessage.bind(1, message.sender.storedValue)
            insertMessage.bind(2, message.messageID.storedValue)
            insertMessage.bind(3, bytes: message.allRecipients.storedBytes)
            insertMessage.bind(4, message.isText)
            insertMessage.bind(5, bytes: Array(message.body.readableBytesView))
            insertMessage.bind(6, message.sentAt.storedMilliseconds)
            insertMessage.bind(7, storedAt)
            insertMessage.bind(8, message.wantsReceipt)
            insertMessage.bind(9, Int64(message.recipients.count))
            try insertMessage.execute()
            let messageRow = db.lastInsertedRowID
            var deliveries: [StoredDelivery] = []
            deliveries.reserveCapacity(message.recipients.count)
            var newCount = 0
            for recipient in message.recipients {
                insertDelivery.bind(1, recipient.storedValue)
                insertDelivery.bind(2, message.sender.storedValue)
                insertDelivery.bind(3, message.messageID.storedValue)
                insertDelivery.bind(4, messageRow)
                do {
                    try insertDelivery.execute()
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
    package func pendingMessages(
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
    package func pendingMessageCount(for recipient: UserID) throws(ParleyError) -> Int {
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
    package func acknowledge(
        recipient: UserID,
        messages: [(sender: UserID, messageID: MessageID)],
        now: Date
    ) throws(ParleyError) -> [AcknowledgedMessage] {
        try acknowledge([(recipient: recipient, messages: messages)], now: now)
    }

    /// Acknowledges the deliveries of several recipients in one transaction (group commit);
    /// otherwise the same as ``acknowledge(recipient:messages:now:)``.
    package func acknowledge(
        _ batch: [(recipient: UserID, messages: [(sender: UserID, messageID: MessageID)])],
        now: Date
    ) throws(ParleyError) -> [AcknowledgedMessage] {
        if batch.allSatisfy({ $0.messages.isEmpty }) { return [] }
        return try write("acknowledging messages") { db in try Self.acknowledge(batch, now: now, in: db) }
    }

    private static func acknowledge(
        _ batch: [(recipient: UserID, messages: [(sender: UserID, messageID: MessageID)])],
        now: Date,
        in db: Database
    ) throws -> [AcknowledgedMessage] {
        let acknowledgedAt = now.storedMilliseconds
        // The message path's hottest statements, bound in place (RawStatement). A message whose
        // last pending delivery this is goes at once, otherwise its count goes down.
        let find = try RawStatement(
            db,
            sql: """
                SELECT d.sequence, m.id, m.wants_receipt, m.pending_count
                FROM delivery AS d LEFT JOIN message AS m ON m.id = d.message
                WHERE d.recipient = ? AND d.sender = ? AND d.message_id = ? AND d.acknowledged_at IS NULL
                """
        )
        let mark = try RawStatement(
            db, sql: "UPDATE delivery SET acknowledged_at = ?, message = NULL WHERE sequence = ?")
        let release = try RawStatement(db, sql: "UPDATE message SET pending_count = pending_count - 1 WHERE id = ?")
        let delete = try RawStatement(db, sql: "DELETE FROM message WHERE id = ?")
        var acknowledged: [AcknowledgedMessage] = []
        for (recipient, messages) in batch {
            for (sender, messageID) in messages {
                find.bind(1, recipient.storedValue)
                find.bind(2, sender.storedValue)
                find.bind(3, messageID.storedValue)
                let found = try find.first { row in
                    (
                        sequence: row.int64(0), message: row.isNull(1) ? nil : row.int64(1),
                        wantsReceipt: row.int64(2) != 0, pending: row.int64(3)
                    )
                }
                guard let found else { continue }
                guard let messageRow = found.message else {
                    throw ParleyError(
                        code: .storageError,
                        message: "corrupt row: pending delivery \(found.sequence) has no message"
                    )
                }
                mark.bind(1, acknowledgedAt)
                mark.bind(2, found.sequence)
                try mark.execute()
                let done = found.pending <= 1 ? delete : release
                done.bind(1, messageRow)
                try done.execute()
                acknowledged.append(
                    AcknowledgedMessage(
                        sender: sender,
                        messageID: messageID,
                        recipient: recipient,
                        wantsReceipt: found.wantsReceipt,
                        acknowledgedAt: Date(storedMilliseconds: acknowledgedAt)
                    )
                )
            }
        }
        return acknowledged
    }

    /// Deletes the tombstones of deliveries acknowledged before `now` minus the configured
    /// ``Configuration/deduplicationWindow``: resends of those messages are no longer recognized.
    ///
    /// - Returns: How many tombstones were deleted.
    package func pruneAcknowledged(now: Date) throws(ParleyError) -> Int {
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

/// A delivery acknowledged within the de-duplication window, as ``ServerStore/messagesToMove()`` lists it.
package struct RememberedDelivery: Sendable, Hashable {
    package var recipient: UserID
    package var sender: UserID
    package var messageID: MessageID
    package var sequence: Int64
    package var acknowledgedAt: Date
}

extension ServerStore {
    /// Every pending delivery (with its message) and every remembered acknowledged one, for a
    /// server that moves its messages from these tables to the message log.
    package func messagesToMove() throws(ParleyError) -> (
        pending: [(recipient: UserID, message: PendingMessage)], remembered: [RememberedDelivery]
    ) {
        let recipients = try read("listing recipients of pending messages") { db in
            try Int64.fetchAll(db, sql: "SELECT DISTINCT recipient FROM delivery WHERE acknowledged_at IS NULL")
        }
        var pending: [(recipient: UserID, message: PendingMessage)] = []
        for raw in recipients {
            guard let value = UInt32(exactly: raw) else { continue }
            let recipient = UserID(value)
            var after: Int64 = 0
            while true {
                let page = try pendingMessages(for: recipient, after: after, limit: 1000)
                pending.append(contentsOf: page.map { (recipient, $0) })
                guard let last = page.last else { break }
                after = last.sequence
            }
        }
        let remembered = try read("listing acknowledged messages") { db in
            var remembered: [RememberedDelivery] = []
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT recipient, sender, message_id, sequence, acknowledged_at FROM delivery
                    WHERE acknowledged_at IS NOT NULL
                    """
            )
            while let row = try rows.next() {
                remembered.append(
                    RememberedDelivery(
                        recipient: try row.userID(0, "delivery.recipient"),
                        sender: try row.userID(1, "delivery.sender"),
                        messageID: try row.messageID(2, "delivery.message_id"),
                        sequence: try row.int64(3, "delivery.sequence"),
                        acknowledgedAt: try row.date(4, "delivery.acknowledged_at")
                    )
                )
            }
            return remembered
        }
        return (pending, remembered)
    }

    /// Deletes every message and delivery (they were moved to the message log).
    package func deleteAllMessages() throws(ParleyError) {
        try write("deleting moved messages") { db in
            try db.execute(sql: "DELETE FROM delivery")
            try db.execute(sql: "DELETE FROM message")
        }
    }
}
