import Foundation
import Logging
import NIOCore
import ParleyCore
import ParleyServerStore
import ParleyWire
import Synchronization

/// The message store as an append-only log (docs/ARCHITECTURE.md, "The message log").
///
/// Every round of the committer is one write at the end of the active segment file (and one
/// `fdatasync` at durability `full`): the messages stored, with a sequence per delivery, and
/// the deliveries acknowledged. Which deliveries are pending, and which (recipient, sender,
/// message ID) were seen within the de-duplication window, is kept in memory and rebuilt from
/// the segments at start; message bodies stay on disk until a recipient that was offline asks
/// for them. Segments are compacted oldest first: the records still needed (messages with
/// pending deliveries, acknowledgements within the window) are written again at the end of the
/// log and the old file is removed, so the disk holds what is pending plus the window's
/// tombstones, not the traffic.
///
/// One writer at a time (the committer, under its lock, from its worker or an event loop):
/// ``acknowledgeAndStore(acknowledgements:messages:now:)``, ``pruneAcknowledged(now:)``,
/// ``dropMessages(for:)`` and ``compact()`` must not overlap. ``pendingMessages(for:after:limit:)``
/// and ``pendingMessageCount(for:)`` may be called from anywhere.
final class MessageLog: Sendable {
    struct Configuration: Sendable {
        /// The directory of the segment files (created if missing).
        var directory: String
        /// Whether every write is followed by `fdatasync` (durability `full`).
        var synchronizes = false
        /// How long acknowledged deliveries are remembered to drop resent duplicates.
        var deduplicationWindow: Duration = .seconds(7 * 24 * 3600)
        /// A segment is sealed and a new one started once it reaches this size.
        var segmentSize: Int64 = 8 << 20

        /// Acknowledgements older than this (milliseconds since 1970) are forgotten at `now`.
        func deduplicationCutoff(at now: Date) -> Int64 {
            now.millisecondsSince1970 &- deduplicationWindow.nanoseconds / 1_000_000
        }
    }

    /// A delivery's identity: what a resend repeats.
    struct DeliveryKey: Hashable, Sendable {
        var recipient: UserID
        var sender: UserID
        var messageID: MessageID

        /// One word into the seeded hasher instead of three (the hot path looks keys up
        /// several times per message).
        func hash(into hasher: inout Hasher) {
            hasher.combine(messageID.rawValue ^ (UInt64(sender.rawValue) << 32 | UInt64(recipient.rawValue)))
        }
    }

    /// One recipient's pending deliveries by ascending sequence (acknowledged ones are skipped
    /// on reading and trimmed from the front).
    final class RecipientQueue: @unchecked Sendable {
        var sequences = CircularBuffer<(sequence: Int64, key: DeliveryKey)>()
        /// Pending deliveries (some of `sequences` may be acknowledged already).
        var count = 0

        init() {}
    }

    private struct Delivery {
        var sequence: Int64
        /// When it was acknowledged (milliseconds since 1970); 0 while pending.
        var at: Int64 = 0
        var state: State

        /// One word: two class references.
        enum State {
            case pending(MessageLogEntry)
            /// A tombstone: its acknowledgement record (``MessageLogRecord/acknowledgementLength``
            /// bytes) is in the segment.
            case acknowledged(MessageLogSegment)
        }

        var entry: MessageLogEntry? {
            if case .pending(let entry) = state { entry } else { nil }
        }
    }

    /// A segment compacted in slices, and where the next slice starts in its messages.
    private struct Compaction {
        let segment: MessageLogSegment
        /// The slots of `segment.messages` before this one were written again already.
        var nextSlot = 0
    }

    private struct Index {
        var deliveries = DeliveryTable<Delivery>()
        var queues = FlatTable<UserID, RecipientQueue>()
        /// Recipients the directory confirmed (a user can only go away through
        /// ``MessageLog/dropMessages(for:)``, which forgets them): most rounds need no directory
        /// read at all.
        var knownUsers = FlatTable<UserID, Void>()
        /// Oldest first; the last one is written to.
        var segments: [MessageLogSegment] = []
        /// The sealed segment whose live records are being written again at the end of the log,
        /// a slice per committer round (``MessageLog/compact(budget:)``).
        var compaction: Compaction?
        var nextSequence: Int64 = 1

        var active: MessageLogSegment { segments[segments.count - 1] }

        /// Counts an acknowledgement of `entry`'s delivery: the message's record is dead once
        /// nothing is pending.
        mutating func release(_ entry: MessageLogEntry, recipient: UserID) {
            entry.releaseDelivery()
            guard let queue = queues[recipient] else { return }
            queue.count -= 1
            if queue.count <= 0 {
                queues[recipient] = nil
                return
            }
            while let first = queue.sequences.first, !isPending(first.key, first.sequence) {
                queue.sequences.removeFirst()
            }
        }

        /// Removes a delivery, pending or remembered, from the index and its segment's count
        /// (the per-recipient order is the caller's).
        mutating func forget(_ key: DeliveryKey) {
            guard let delivery = deliveries.removeValue(forKey: key) else { return }
            switch delivery.state {
            case .pending(let entry): entry.releaseDelivery()
            case .acknowledged(let segment): segment.liveBytes -= Int64(MessageLogRecord.acknowledgementLength)
            }
        }

        func isPending(_ key: DeliveryKey, _ sequence: Int64) -> Bool {
            guard let delivery = deliveries[key], delivery.sequence == sequence, delivery.entry != nil else {
                return false
            }
            return true
        }

        mutating func addTombstone(_ key: DeliveryKey, sequence: Int64, at: Int64, segment: MessageLogSegment) {
            deliveries[key] = Delivery(sequence: sequence, at: at, state: .acknowledged(segment))
            segment.liveBytes += Int64(MessageLogRecord.acknowledgementLength)
            segment.acknowledgements.append(key)
        }
    }

    let configuration: Configuration
    private let index: Mutex<Index>
    private let logger: Logger
    /// Which of some users are registered (one directory read per round).
    private let existingUsers: @Sendable ([UserID]) throws(ParleyError) -> Set<UserID>

    /// Opens the log in `configuration.directory`, replaying its segments.
    ///
    /// A write torn by a crash at the end of the last segment is cut off. Damage anywhere else
    /// refuses to open, naming the file and the offset.
    init(
        configuration: Configuration,
        logger: Logger,
        now: Date = Date(),
        existingUsers: @escaping @Sendable ([UserID]) throws(ParleyError) -> Set<UserID>
    ) throws(ParleyError) {
        self.configuration = configuration
        self.logger = logger
        self.existingUsers = existingUsers
        self.index = Mutex(try Self.replay(configuration, logger: logger, now: now))
    }

    // MARK: - Writing (one writer at a time)

    /// Acknowledges `acknowledgements`, then stores `messages`, in one write at the end of the
    /// log: one round of the message path's group commit.
    ///
    /// A recipient who is not a registered user is left out of its message. A (recipient,
    /// sender, message ID) the log has, pending or acknowledged within the window, is not
    /// stored again: its delivery comes back with `duplicate` set.
    func acknowledgeAndStore(
        acknowledgements: [(recipient: UserID, messages: [(sender: UserID, messageID: MessageID)])],
        messages: [NewMessage],
        now: Date
    ) throws(ParleyError) -> (acknowledged: [AcknowledgedMessage], stored: [[StoredDelivery]]) {
        try round(acknowledgements, messages, now: now)
    }

    /// ``acknowledgeAndStore(acknowledgements:messages:now:)`` with the committer's submissions.
    func acknowledgeAndStore(
        acknowledgements: [(recipient: UserID, messages: [(sender: UserID, messageID: MessageID)])],
        submissions: [MessageCommitter.Submission],
        now: Date
    ) throws(ParleyError) -> (acknowledged: [AcknowledgedMessage], stored: [[StoredDelivery]]) {
        try round(acknowledgements, submissions, now: now)
    }

    /// An acknowledgement a round plans under the lock and applies after its write.
    private struct PlannedAck {
        var key: DeliveryKey
        var sequence: Int64
        var entry: MessageLogEntry
    }

    /// A message a round plans under the lock and applies after its write.
    private struct PlannedStore {
        var sender: UserID
        var messageID: MessageID
        var wantsReceipt: Bool
        /// Its deliveries in `plannedDeliveries`.
        var deliveries: Range<Int>
        var offset: Int
        var length: Int
    }

    /// One round, for either kind of message (specialized for each).
    private func round<Message: RoundMessage>(
        _ acknowledgements: [(recipient: UserID, messages: [(sender: UserID, messageID: MessageID)])],
        _ messages: [Message],
        now: Date
    ) throws(ParleyError) -> (acknowledged: [AcknowledgedMessage], stored: [[StoredDelivery]]) {
        let at = now.millisecondsSince1970
        let unconfirmed = index.withLock { index in
            var unconfirmed: Set<UserID> = []
            for held in messages {
                for recipient in held.message.recipients where !index.knownUsers.contains(recipient) {
                    unconfirmed.insert(recipient)
                }
            }
            return unconfirmed
        }
        if !unconfirmed.isEmpty {
            let found = try existingUsers(Array(unconfirmed))
            index.withLock { index in
                for user in found { index.knownUsers[user] = () }
            }
        }
        try rotateIfFull()

        // Plan under the lock; only the one writer changes the index, so the plan holds until it
        // is applied after the write.
        var buffer = ByteBuffer()
        buffer.reserveCapacity(messages.count * 160 + acknowledgements.count * 48)
        var acks: [PlannedAck] = []
        var stores: [PlannedStore] = []
        // The round's new deliveries, message after message: one array, not one per message.
        var plannedDeliveries: [MessageLogRecord.Delivery] = []
        plannedDeliveries.reserveCapacity(messages.count)
        var acknowledged: [AcknowledgedMessage] = []
        var stored: [[StoredDelivery]] = []
        stored.reserveCapacity(messages.count)
        let nextSequence = index.withLock { index -> Int64 in
            var acknowledgedNow = DeliveryTable<Void>(minimumCapacity: acknowledgements.count)
            for (recipient, references) in acknowledgements {
                for (sender, messageID) in references {
                    let key = DeliveryKey(recipient: recipient, sender: sender, messageID: messageID)
                    guard let delivery = index.deliveries[key], let entry = delivery.entry,
                        acknowledgedNow.updateValue((), forKey: key) == nil
                    else { continue }
                    let record = MessageLogRecord.acknowledged(
                        .init(
                            recipient: recipient, sender: sender, messageID: messageID, sequence: delivery.sequence,
                            at: at)
                    )
                    record.write(to: &buffer)
                    acks.append(PlannedAck(key: key, sequence: delivery.sequence, entry: entry))
                    acknowledged.append(
                        AcknowledgedMessage(
                            sender: sender, messageID: messageID, recipient: recipient,
                            wantsReceipt: entry.wantsReceipt, acknowledgedAt: Date(millisecondsSince1970: at)
                        )
                    )
                }
            }
            var next = index.nextSequence
            var newInRound = DeliveryTable<Int64>(minimumCapacity: messages.count)
            for held in messages {
                let message = held.message
                var results: [StoredDelivery] = []
                results.reserveCapacity(message.recipients.count)
                let first = plannedDeliveries.count
                for recipient in message.recipients where index.knownUsers.contains(recipient) {
                    let key = DeliveryKey(recipient: recipient, sender: message.sender, messageID: message.messageID)
                    if let existing = index.deliveries[key] {
                        results.append(
                            StoredDelivery(
                                recipient: recipient, sequence: existing.sequence, duplicate: true,
                                alreadyAcknowledged: existing.entry == nil || acknowledgedNow.contains(key)
                            )
                        )
                    } else if let sequence = newInRound[key] {
                        results.append(
                            StoredDelivery(
                                recipient: recipient, sequence: sequence, duplicate: true, alreadyAcknowledged: false)
                        )
                    } else {
                        newInRound[key] = next
                        plannedDeliveries.append(MessageLogRecord.Delivery(recipient: recipient, sequence: next))
                        results.append(
                            StoredDelivery(
                                recipient: recipient, sequence: next, duplicate: false, alreadyAcknowledged: false)
                        )
                        next += 1
                    }
                }
                stored.append(results)
                let deliveries = first..<plannedDeliveries.count
                guard !deliveries.isEmpty else { continue }
                let offset = buffer.writerIndex
                let length = MessageLogRecord.writeStored(
                    sender: message.sender, messageID: message.messageID, isText: message.isText,
                    wantsReceipt: message.wantsReceipt, sentAt: message.sentAt.millisecondsSince1970, storedAt: at,
                    allRecipients: message.allRecipients, deliveries: plannedDeliveries[deliveries],
                    body: message.body.readableBytesView,
                    to: &buffer
                )
                stores.append(
                    PlannedStore(
                        sender: message.sender, messageID: message.messageID, wantsReceipt: message.wantsReceipt,
                        deliveries: deliveries, offset: offset, length: length))
            }
            return next
        }
        guard buffer.readableBytes > 0 else { return (acknowledged, stored) }

        let active = index.withLock { $0.active }
        let base = active.size
        try write(&buffer, to: active)

        index.withLock { index in
            for ack in acks {
                index.addTombstone(ack.key, sequence: ack.sequence, at: at, segment: active)
                index.release(ack.entry, recipient: ack.key.recipient)
            }
            for store in stores {
                let entry = MessageLogEntry(
                    sender: store.sender, messageID: store.messageID,
                    wantsReceipt: store.wantsReceipt, pending: store.deliveries.count,
                    segment: active, offset: base + Int64(store.offset), length: store.length
                )
                active.hold(entry)
                for delivery in plannedDeliveries[store.deliveries] {
                    let key = DeliveryKey(
                        recipient: delivery.recipient, sender: store.sender, messageID: store.messageID)
                    index.deliveries[key] = Delivery(sequence: delivery.sequence, state: .pending(entry))
                    let queue: RecipientQueue
                    if let existing = index.queues[delivery.recipient] {
                        queue = existing
                    } else {
                        queue = RecipientQueue()
                        index.queues[delivery.recipient] = queue
                    }
                    queue.sequences.append((delivery.sequence, key))
                    queue.count += 1
                }
            }
            index.nextSequence = nextSequence
        }
        return (acknowledged, stored)
    }

    /// Forgets acknowledged deliveries older than the de-duplication window (resends of them
    /// are no longer recognized), then compacts what that freed.
    ///
    /// - Returns: How many were forgotten.
    @discardableResult
    func pruneAcknowledged(now: Date) throws(ParleyError) -> Int {
        let cutoff = configuration.deduplicationCutoff(at: now)
        // Tombstones are found through the segments holding them (a scan of what the window
        // remembers, once per prune interval); each segment's list loses what moved or went.
        let removed = index.withLock { index in
            var removed = 0
            for segment in index.segments {
                var kept: [DeliveryKey] = []
                for key in segment.acknowledgements {
                    guard let delivery = index.deliveries[key], case .acknowledged(let holder) = delivery.state,
                        holder === segment
                    else { continue }
                    if delivery.at < cutoff {
                        index.forget(key)
                        removed += 1
                    } else {
                        kept.append(key)
                    }
                }
                segment.acknowledgements = kept
            }
            return removed
        }
        try compact(budget: Self.compactionSlice)
        return removed
    }

    /// Drops every delivery to `recipient`, pending or remembered (the user was deleted).
    func dropMessages(for recipient: UserID) throws(ParleyError) {
        try rotateIfFull()
        var buffer = ByteBuffer()
        MessageLogRecord.dropped(recipient: recipient).write(to: &buffer)
        try write(&buffer, to: index.withLock { $0.active })
        index.withLock { index in Self.drop(recipient, in: &index) }
    }

    private static func drop(_ recipient: UserID, in index: inout Index) {
        for key in index.deliveries.keys where key.recipient == recipient { index.forget(key) }
        index.queues[recipient] = nil
        index.knownUsers[recipient] = nil
    }

    /// Live records (messages and acknowledgements) a small committer round writes again at
    /// most while compacting (``MessageStore/maintain(afterWriting:)``; a larger round, twice
    /// what it wrote, up to ``largestCompactionSlice``): a whole 8 MiB segment at once stalled
    /// the message path for tens of milliseconds, and fixed slices of 2,048 records still for
    /// up to 20 ms, when rounds of a dozen messages take a fraction of a millisecond (at 50,000
    /// messages per second: most of the p99 latency beside the delivery table's growth).
    static let compactionSlice = 256
    /// Records a large round writes again at most while compacting.
    static let largestCompactionSlice = 2048

    /// Removes the oldest sealed segments nothing needs, and compacts the oldest one when at
    /// least half of it is dead or the sealed segments hold more than twice what they need.
    ///
    /// Compacting writes the segment's live records again at the end of the log, at most
    /// `budget` of them per call: a segment compacted in slices stays in the log until its last
    /// slice is written, and the next call goes on with it. (A crash in between leaves two copies
    /// of some records; reading the log back, the newer place wins.)
    func compact(budget: Int = .max) throws(ParleyError) {
        var budget = budget
        while budget > 0 {
            let next = index.withLock { index -> (MessageLogSegment, copy: Bool)? in
                if let compaction = index.compaction { return (compaction.segment, true) }
                guard index.segments.count >= 2 else { return nil }
                let oldest = index.segments[0]
                if oldest.liveBytes <= 0 && oldest.liveMessages == 0 {
                    index.segments.removeFirst()
                    return (oldest, false)
                }
                let sealed = index.segments.dropLast()
                let size = sealed.reduce(0) { $0 + $1.size }
                let live = sealed.reduce(0) { $0 + $1.liveBytes }
                guard oldest.liveBytes * 2 <= oldest.size || size > 2 * live + configuration.segmentSize else {
                    return nil
                }
                index.compaction = Compaction(segment: oldest)
                return (oldest, true)
            }
            guard let (segment, copy) = next else { return }
            if copy {
                let slice = try copySlice(of: segment, budget: budget)
                budget -= slice.copied
                guard slice.done else { return }
                index.withLock { index in
                    segment.messages = []
                    segment.liveMessages = 0
                    segment.liveBytes = 0
                    index.segments.removeAll { $0 === segment }
                    index.compaction = nil
                }
            }
            segment.remove()
            logger.debug(
                "message log segment compacted",
                metadata: ["segment": "\(segment.number)", "copied": "\(copy)"])
        }
    }

    /// Writes up to `budget` of `segment`'s live records again at the end of the log, from
    /// where the last slice stopped: messages with pending deliveries in slot order, then
    /// acknowledgements within the window.
    ///
    /// - Returns: How many records it went through (at least one unless it is done), and whether
    ///   nothing of the segment is left to copy.
    private func copySlice(of segment: MessageLogSegment, budget: Int) throws(ParleyError) -> (copied: Int, done: Bool)
    {
        try rotateIfFull()
        // Only the one writer changes the index: what is read under one lock holds under the next.
        let (entries, tombstones, firstSlot, nextSlot, acknowledgementsSeen) = index.withLock { index in
            var entries: [MessageLogEntry] = []
            let firstSlot = index.compaction?.nextSlot ?? 0
            var slot = firstSlot
            while slot < segment.messages.count && entries.count < budget {
                if let entry = segment.messages[slot] { entries.append(entry) }
                slot += 1
            }
            let seen = min(segment.acknowledgements.count, budget - entries.count)
            var tombstones: [(DeliveryKey, sequence: Int64, at: Int64)] = []
            for key in segment.acknowledgements.prefix(seen) {
                if let delivery = index.deliveries[key], case .acknowledged(let holder) = delivery.state,
                    holder === segment
                {
                    tombstones.append((key, delivery.sequence, delivery.at))
                }
            }
            return (entries, tombstones, firstSlot, slot, seen)
        }
        var records: [MessageLogRecord.Stored] = []
        records.reserveCapacity(entries.count)
        for entry in entries {
            guard case .stored(let record) = try segment.record(at: entry.offset, length: Int(entry.length)) else {
                throw ParleyError(
                    code: .storageError,
                    message: "the message log \(segment.path) has another record where a message should be")
            }
            records.append(record)
        }
        var buffer = ByteBuffer()
        var moved: [(MessageLogEntry, offset: Int, length: Int)] = []
        index.withLock { index in
            for (entry, var record) in zip(entries, records) {
                record.deliveries = record.deliveries.filter { delivery in
                    let key = DeliveryKey(
                        recipient: delivery.recipient, sender: entry.sender, messageID: entry.messageID)
                    return index.deliveries[key]?.entry === entry
                }
                let offset = buffer.writerIndex
                moved.append((entry, offset, MessageLogRecord.stored(record).write(to: &buffer)))
            }
        }
        for (key, sequence, at) in tombstones {
            MessageLogRecord.acknowledged(
                .init(
                    recipient: key.recipient, sender: key.sender, messageID: key.messageID, sequence: sequence, at: at)
            ).write(to: &buffer)
        }
        let active = index.withLock { $0.active }
        let base = active.size
        if buffer.readableBytes > 0 { try write(&buffer, to: active) }
        return index.withLock { index in
            for (entry, offset, length) in moved {
                segment.letGo(entry)
                entry.offset = base + Int64(offset)
                entry.length = Int32(length)
                active.hold(entry)
            }
            for (key, sequence, at) in tombstones {
                segment.liveBytes -= Int64(MessageLogRecord.acknowledgementLength)
                index.addTombstone(key, sequence: sequence, at: at, segment: active)
            }
            index.compaction?.nextSlot = nextSlot
            segment.acknowledgements.removeFirst(acknowledgementsSeen)
            let done = nextSlot >= segment.messages.count && segment.acknowledgements.isEmpty
            return (nextSlot - firstSlot + acknowledgementsSeen, done)
        }
    }

    private func rotateIfFull() throws(ParleyError) {
        let (active, next) = index.withLock { ($0.active, $0.nextSequence) }
        guard active.size >= configuration.segmentSize else { return }
        let segment = try MessageLogSegment.create(number: active.number + 1, in: configuration.directory)
        var buffer = ByteBuffer()
        MessageLogRecord.header(nextSequence: next).write(to: &buffer)
        try write(&buffer, to: segment)
        if configuration.synchronizes { try Self.synchronizeDirectory(configuration.directory) }
        index.withLock { $0.segments.append(segment) }
    }

    private func write(_ buffer: inout ByteBuffer, to segment: MessageLogSegment) throws(ParleyError) {
        try segment.append(&buffer)
        if configuration.synchronizes { try segment.synchronize() }
    }

    private static func synchronizeDirectory(_ path: String) throws(ParleyError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ParleyError(code: .storageError, message: "opening the message log directory \(path) failed")
        }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else {
            throw ParleyError(code: .storageError, message: "synchronizing the message log directory \(path) failed")
        }
    }

    // MARK: - Reading (any thread)

    /// The unacknowledged messages for `recipient` with a sequence above `sequence`, ascending,
    /// at most `limit` of them.
    func pendingMessages(for recipient: UserID, after sequence: Int64, limit: Int) throws(ParleyError)
        -> [PendingMessage]
    {
        guard limit > 0 else { return [] }
        let found = index.withLock { index -> [(Int64, MessageLogEntry, MessageLogSegment, Int64, Int32)] in
            guard let queue = index.queues[recipient]?.sequences else { return [] }
            // The queue is sorted by sequence: find the first one above `sequence`.
            var low = 0
            var high = queue.count
            while low < high {
                let middle = (low + high) / 2
                if queue[queue.index(queue.startIndex, offsetBy: middle)].sequence <= sequence {
                    low = middle + 1
                } else {
                    high = middle
                }
            }
            var found: [(Int64, MessageLogEntry, MessageLogSegment, Int64, Int32)] = []
            var position = queue.index(queue.startIndex, offsetBy: low)
            while position != queue.endIndex && found.count < limit {
                let (sequence, key) = queue[position]
                if let delivery = index.deliveries[key], delivery.sequence == sequence, let entry = delivery.entry {
                    found.append((sequence, entry, entry.segment, entry.offset, entry.length))
                }
                position = queue.index(after: position)
            }
            return found
        }
        var messages: [PendingMessage] = []
        messages.reserveCapacity(found.count)
        for (sequence, entry, segment, offset, length) in found {
            guard case .stored(let record) = try segment.record(at: offset, length: Int(length)) else {
                throw ParleyError(
                    code: .storageError,
                    message: "the message log \(segment.path) has another record where a message should be")
            }
            messages.append(
                PendingMessage(
                    sequence: sequence, messageID: entry.messageID, sender: entry.sender,
                    recipients: record.allRecipients, isText: record.isText, body: record.body,
                    sentAt: Date(millisecondsSince1970: record.sentAt),
                    storedAt: Date(millisecondsSince1970: record.storedAt),
                    wantsReceipt: record.wantsReceipt
                )
            )
        }
        return messages
    }

    /// How many messages `recipient` has not acknowledged.
    func pendingMessageCount(for recipient: UserID) -> Int {
        index.withLock { $0.queues[recipient]?.count ?? 0 }
    }

    /// Sizes for the status page and tests.
    struct Statistics: Sendable, Equatable {
        var segments: Int
        var bytes: Int64
        var liveBytes: Int64
        var pendingDeliveries: Int
        var rememberedDeliveries: Int
        /// A segment is being compacted in slices.
        var compacting: Bool
    }

    var statistics: Statistics {
        index.withLock { index in
            let pending = index.queues.reduce(0) { $0 + $1.value.count }
            return Statistics(
                segments: index.segments.count,
                bytes: index.segments.reduce(0) { $0 + $1.size },
                liveBytes: index.segments.reduce(0) { $0 + $1.liveBytes },
                pendingDeliveries: pending,
                rememberedDeliveries: index.deliveries.count - pending,
                compacting: index.compaction != nil
            )
        }
    }

    // MARK: - Opening

    private static func replay(_ configuration: Configuration, logger: Logger, now: Date) throws(ParleyError) -> Index {
        let directory = configuration.directory
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw ParleyError(
                code: .storageError, message: "creating the message log directory \(directory) failed", cause: error)
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw ParleyError(
                code: .storageError, message: "listing the message log directory \(directory) failed", cause: error)
        }
        let numbers = names.compactMap(MessageLogSegment.number(inFileName:)).sorted()
        var index = Index()
        let cutoff = configuration.deduplicationCutoff(at: now)
        for (position, number) in numbers.enumerated() {
            let segment = try MessageLogSegment.open(number: number, in: directory)
            index.segments.append(segment)
            let bytes = try segment.read(at: 0, count: Int(segment.size))
            var offset = MessageLogSegment.magic.count
            while offset < bytes.count {
                let result = bytes.withUnsafeBytes {
                    MessageLogRecord.read(from: UnsafeRawBufferPointer(rebasing: $0[offset...]))
                }
                guard case .record(let record, let length) = result else {
                    let reason: String =
                        switch result {
                        case .damaged(let reason): reason
                        default: "a record cut short"
                        }
                    guard position == numbers.count - 1 else {
                        throw ParleyError(
                            code: .storageError,
                            message: """
                                the message log segment \(segment.path) is damaged at byte \(offset) (\(reason)); \
                                it is not the last segment, so this is not a write cut short by a crash
                                """
                        )
                    }
                    logger.warning(
                        "message log: cutting a write torn by a crash off the last segment",
                        metadata: ["segment": "\(segment.path)", "offset": "\(offset)", "found": "\(reason)"]
                    )
                    try segment.truncate(to: Int64(offset))
                    break
                }
                apply(record, at: Int64(offset), length: length, in: segment, cutoff: cutoff, to: &index)
                offset += length
            }
        }
        if index.segments.isEmpty {
            let segment = try MessageLogSegment.create(number: 1, in: directory)
            var buffer = ByteBuffer()
            MessageLogRecord.header(nextSequence: index.nextSequence).write(to: &buffer)
            try segment.append(&buffer)
            index.segments.append(segment)
        }
        rebuildOrder(&index)
        return index
    }

    /// The per-recipient queues, from the deliveries (records moved by compaction come after
    /// newer ones).
    private static func rebuildOrder(_ index: inout Index) {
        var queues: [UserID: [(sequence: Int64, key: DeliveryKey)]] = [:]
        for (key, delivery) in index.deliveries {
            switch delivery.state {
            case .pending:
                queues[key.recipient, default: []].append((delivery.sequence, key))
            case .acknowledged:
                break
            }
        }
        index.queues = FlatTable()
        for (recipient, sequences) in queues {
            let queue = RecipientQueue()
            queue.sequences = CircularBuffer(sequences.sorted { $0.sequence < $1.sequence })
            queue.count = sequences.count
            index.queues[recipient] = queue
        }
    }

    /// Takes in messages kept elsewhere before (the SQLite tables of earlier versions), with
    /// their sequences, in one write; keys the log already has are left alone, so moving the
    /// same messages twice (a crash before the old copy was deleted) changes nothing.
    func take(pending: [(recipient: UserID, message: PendingMessage)], remembered: [RememberedDelivery])
        throws(ParleyError)
    {
        guard !pending.isEmpty || !remembered.isEmpty else { return }
        let cutoff = configuration.deduplicationCutoff(at: Date())
        var records: [MessageLogRecord] = []
        index.withLock { index in
            for (recipient, message) in pending
            where index.deliveries[
                DeliveryKey(recipient: recipient, sender: message.sender, messageID: message.messageID)] == nil
            {
                records.append(
                    .stored(
                        .init(
                            sender: message.sender, messageID: message.messageID, isText: message.isText,
                            wantsReceipt: message.wantsReceipt, sentAt: message.sentAt.millisecondsSince1970,
                            storedAt: message.storedAt.millisecondsSince1970, allRecipients: message.recipients,
                            deliveries: [.init(recipient: recipient, sequence: message.sequence)], body: message.body
                        )
                    )
                )
            }
            for delivery in remembered
            where index.deliveries[
                DeliveryKey(recipient: delivery.recipient, sender: delivery.sender, messageID: delivery.messageID)]
                == nil
            {
                records.append(
                    .acknowledged(
                        .init(
                            recipient: delivery.recipient, sender: delivery.sender, messageID: delivery.messageID,
                            sequence: delivery.sequence, at: delivery.acknowledgedAt.millisecondsSince1970
                        )
                    )
                )
            }
        }
        let active = index.withLock { $0.active }
        var buffer = ByteBuffer()
        var placed: [(MessageLogRecord, offset: Int64, length: Int)] = []
        for record in records {
            let offset = active.size + Int64(buffer.writerIndex)
            placed.append((record, offset, record.write(to: &buffer)))
        }
        try write(&buffer, to: active)
        index.withLock { index in
            for (record, offset, length) in placed {
                Self.apply(record, at: offset, length: length, in: active, cutoff: cutoff, to: &index)
            }
            Self.rebuildOrder(&index)
        }
    }

    private static func apply(
        _ record: MessageLogRecord,
        at offset: Int64,
        length: Int,
        in segment: MessageLogSegment,
        cutoff: Int64,
        to index: inout Index
    ) {
        switch record {
        case .header(let next):
            index.nextSequence = max(index.nextSequence, next)
        case .stored(let stored):
            let entry = MessageLogEntry(
                sender: stored.sender, messageID: stored.messageID, wantsReceipt: stored.wantsReceipt, pending: 0,
                segment: segment, offset: offset, length: length)
            for delivery in stored.deliveries {
                index.nextSequence = max(index.nextSequence, delivery.sequence &+ 1)
                let key = DeliveryKey(recipient: delivery.recipient, sender: stored.sender, messageID: stored.messageID)
                if let existing = index.deliveries[key] {
                    // A copy written by a compaction the crash interrupted: the newer place wins.
                    guard let old = existing.entry else { continue }
                    old.releaseDelivery()
                }
                index.deliveries[key] = Delivery(sequence: delivery.sequence, state: .pending(entry))
                entry.pending += 1
            }
            if entry.pending > 0 { segment.hold(entry) }
        case .acknowledged(let ack):
            index.nextSequence = max(index.nextSequence, ack.sequence &+ 1)
            let key = DeliveryKey(recipient: ack.recipient, sender: ack.sender, messageID: ack.messageID)
            index.forget(key)
            if ack.at >= cutoff {
                index.addTombstone(key, sequence: ack.sequence, at: ack.at, segment: segment)
            }
        case .dropped(let recipient):
            drop(recipient, in: &index)
        }
    }
}
