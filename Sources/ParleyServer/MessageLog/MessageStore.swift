import Foundation
import Logging
import ParleyCore
import ParleyServerStore

/// Where the message path keeps messages until their recipients acknowledge them: the seam a
/// second implementation fills (``MessageLog``, the default; the SQLite tables of
/// ``/ParleyServerStore/ServerStore``; next, a database several servers share).
///
/// The committer calls the writing methods one at a time, in round order (from its worker
/// thread, or a small round from an event loop: ``roundsAreBrief``); the reading ones are
/// called from anywhere.
protocol MessageStore: Sendable {
    /// One round of group commit: acknowledgements first, then new messages, durable when it
    /// returns. Recipients that are not registered users are left out of their message.
    /// The messages are the committer's submissions, read in place.
    func acknowledgeAndStore(
        acknowledgements: [(recipient: UserID, messages: [(sender: UserID, messageID: MessageID)])],
        submissions: [MessageCommitter.Submission],
        now: Date
    ) throws(ParleyError) -> (acknowledged: [AcknowledgedMessage], stored: [[StoredDelivery]])

    /// Pending messages of `recipient` above `sequence`, ascending, at most `limit`.
    func pendingMessages(for recipient: UserID, after sequence: Int64, limit: Int) throws(ParleyError)
        -> [PendingMessage]

    func pendingMessageCount(for recipient: UserID) throws(ParleyError) -> Int

    /// Forgets acknowledged deliveries older than the de-duplication window.
    func pruneAcknowledged(now: Date) throws(ParleyError) -> Int

    /// Drops everything kept for a deleted user.
    func dropMessages(for recipient: UserID) throws(ParleyError)

    /// Upkeep between rounds (the log compacts its oldest segment when enough of it is dead),
    /// after a round that wrote `records` messages and acknowledgements.
    func maintain(afterWriting records: Int) throws(ParleyError)

    /// Whether a small round returns without waiting for the disk (no `fdatasync`, no database
    /// transaction), so that it may run on an event loop between its reads and writes.
    var roundsAreBrief: Bool { get }
}

/// A message a round stores, as the store reads it: a ``NewMessage``, or a committer's
/// submission holding one. The log reads a submission's message in place; an array of copies
/// made for the round retained and released the recipient lists and the body of every message
/// on the committer's thread (about 2 % of the server's time at saturation).
protocol RoundMessage {
    var message: NewMessage { get }
}

extension NewMessage: RoundMessage {
    var message: NewMessage { self }
}

extension MessageCommitter.Submission: RoundMessage {}

extension MessageLog: MessageStore {
    /// A round is one `write` to the page cache, unless every write is synchronized.
    var roundsAreBrief: Bool { !configuration.synchronizes }

    /// Compacts up to twice what the round wrote, at least ``compactionSlice`` and at most
    /// ``largestCompactionSlice`` records: small slices while rounds are small keep each round
    /// short (a round of a dozen messages takes a fraction of a millisecond).
    func maintain(afterWriting records: Int) throws(ParleyError) {
        try compact(budget: Swift.min(Swift.max(Self.compactionSlice, 2 * records), Self.largestCompactionSlice))
    }
}

extension ServerStore: MessageStore {
    func acknowledgeAndStore(
        acknowledgements: [(recipient: UserID, messages: [(sender: UserID, messageID: MessageID)])],
        submissions: [MessageCommitter.Submission],
        now: Date
    ) throws(ParleyError) -> (acknowledged: [AcknowledgedMessage], stored: [[StoredDelivery]]) {
        try acknowledgeAndStore(acknowledgements: acknowledgements, messages: submissions.map(\.message), now: now)
    }

    func dropMessages(for recipient: UserID) throws(ParleyError) {
        // deleteUser already deleted the user's deliveries, in the same transaction.
    }

    func maintain(afterWriting records: Int) throws(ParleyError) {}

    /// A round is a SQLite transaction.
    var roundsAreBrief: Bool { false }
}

extension ParleyServer {
    /// The message store `configuration` asks for; with the log, messages an earlier version
    /// kept in SQLite move there first.
    static func openMessages(
        _ configuration: Configuration,
        store: ServerStore,
        logger: Logger
    ) throws(ParleyError) -> any MessageStore {
        let log = try MessageLog(
            configuration: .init(
                directory: configuration.messageLogPath,
                synchronizes: configuration.durability == .full,
                deduplicationWindow: configuration.deduplicationWindow
            ),
            logger: logger,
            existingUsers: { ids throws(ParleyError) in try store.existingUserIDs(among: ids) }
        )
        switch configuration.messageStorage {
        case .log:
            let (pending, remembered) = try store.messagesToMove()
            if !pending.isEmpty || !remembered.isEmpty {
                try log.take(pending: pending, remembered: remembered)
                try store.deleteAllMessages()
                logger.notice(
                    "moved messages from SQLite to the message log",
                    metadata: ["pending": "\(pending.count)", "remembered": "\(remembered.count)"])
            }
            return log
        case .sqlite:
            let pending = log.statistics.pendingDeliveries
            guard pending == 0 else {
                throw ParleyError(
                    code: .invalidRequest,
                    message: """
                        the message log in \(configuration.messageLogPath) holds \(pending) pending \
                        deliveries: start with message storage "log" (the default)
                        """
                )
            }
            return store
        }
    }
}
