import Dispatch
import Foundation
import Logging
import NIOPosix
import ParleyCore
import ParleyServerStore
import Synchronization

/// Writes message history in the background, in two steps, so that keeping history costs the
/// message path little even when the server is saturated:
///
/// 1. The message path hands the recorder what was accepted and what was acknowledged; a writer
///    thread appends whatever has accumulated to the journal (``/ParleyServerStore/HistoryJournal``,
///    a table without indexes) in one transaction per round. A round gathers for up to
///    ``gatherInterval`` (or until ``maximumBatch`` items wait): an acknowledgement that arrives
///    in the same round as its message becomes the entry's delivery time, one row instead of two.
/// 2. An indexer thread at the lowest CPU priority (nice 19) moves the journal into the
///    searchable history (``/ParleyServerStore/HistoryStore``: the table, its indexes, the FTS5 index),
///    thousands of rows per transaction. Indexing is most of history's cost (about 10 µs per
///    message, against about 2 for the journal); at a low priority it takes the time the message
///    path leaves, so a burst that saturates the server is indexed after it, and the journal (on
///    disk, not in memory) holds the backlog meanwhile. Under a load that never lets up, the
///    indexer still gets its share of the CPU from the kernel and the journal grows until it does.
///
/// A search never sees either delay: it asks for what is queued to be written first and indexes
/// what the journal holds itself (``waitForPendingWrites()``), at its caller's priority.
///
/// The message path never waits for it. The queue is bounded (``capacity`` items); when it is
/// full the newest items are dropped, counted (``droppedCount``) and logged (at most once per
/// ``dropLogInterval``), and the message path goes on as if history were off: history is a
/// record, never a reason to slow or refuse a message. A dropped acceptance leaves no entry; a
/// dropped acknowledgement leaves the entry undelivered.
///
/// The two call sites on the message path are marked `// history:` (``ServerContext``). A
/// server without history has no recorder, so the cost there is one branch on an optional.
///
/// Entry point for other kinds (the file transfer records `file` entries): ``record(_:)``.
final class HistoryRecorder: Sendable {
    /// One accepted message for one recipient, as the message path knows it.
    struct Accepted: Sendable {
        var sender: UserID
        var recipient: UserID
        var messageID: MessageID
        var sentAt: Date
        var isText: Bool
        var body: [UInt8]
    }

    private enum Item: Sendable {
        case accepted(Accepted)
        case entry(HistoryEntry)
        case delivered(sender: UserID, messageID: MessageID, recipient: UserID, at: Date)
    }

    private struct Queue {
        var items: [Item] = []
        var running = false
        var stopped = false
        var dropped = 0
        var lastDropLog: ContinuousClock.Instant?
        /// Callers waiting for everything queued to be written: the worker does not gather.
        var urgent = 0
        /// The indexer runs (or is about to).
        var indexing = false
        /// Rounds appended to the journal: the indexer goes on while this changes.
        var appended = 0
        /// When the writer last appended, and the rows appended and not yet indexed.
        var lastAppend = ContinuousClock.now
        var backlog = 0
        /// Journal rows up to here are in the history: the writer deletes them from the journal.
        var indexedThrough: Int64 = 0
        var trimmedThrough: Int64 = 0
    }

    let store: HistoryStore
    let journal: HistoryJournal
    /// How long entries are kept.
    let retention: Duration
    /// The most items waiting to be written; more are dropped.
    let capacity: Int
    /// Most items written per transaction; a round stops gathering when this many wait.
    private let maximumBatch = 8192
    /// How long a round gathers items before it writes them.
    private let gatherInterval: TimeInterval = 0.25
    /// Wakes a gathering worker: the batch is full, or someone waits for the writes.
    private let wake = NSCondition()
    private let dropLogInterval: Duration = .seconds(10)
    private let queue = Mutex(Queue())
    private let worker = NIOThreadPool(numberOfThreads: 1)
    private let indexer = NIOThreadPool(numberOfThreads: 1)
    /// Linux's SCHED_IDLE (sched.h defines it only with _GNU_SOURCE).
    private static let scheduleIdle: Int32 = 5
    /// The indexer waits for this long without appends before it indexes...
    private let quietInterval: Duration = .milliseconds(500)
    /// ...unless the journal holds this many rows (about 250 MB on disk).
    private let maximumBacklog = 1 << 20
    /// Journal rows per indexing transaction.
    private let indexBatch = 8192
    let logger: Logger

    /// Starts the writer and the indexer, which first indexes what a previous run left in the journal.
    init(
        store: HistoryStore, journal: HistoryJournal, retention: Duration, capacity: Int, logger: Logger
    ) throws(ParleyError) {
        self.store = store
        self.journal = journal
        self.retention = retention
        self.capacity = capacity
        self.logger = logger
        let indexed = try store.appliedJournalSequence()
        // A crash between indexing and trimming left indexed rows in the journal.
        try journal.deleteThrough(indexed)
        try journal.continueAfter(indexed)
        let leftover = try journal.count()
        queue.withLock { queue in
            queue.indexedThrough = indexed
            queue.trimmedThrough = indexed
            queue.backlog = leftover
        }
        worker.start()
        indexer.start()
        indexer.submit { _ in
            // The lowest priority, for this thread only (on Linux the policy and the nice value
            // belong to the thread, and 0 is the calling one): SCHED_IDLE runs only on a CPU
            // nothing else wants; nice 19 where that policy is refused.
            var parameters = sched_param()
            if sched_setscheduler(0, Self.scheduleIdle, &parameters) != 0 {
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
            }
        }
        startIndexing()
    }

    /// Items dropped because the queue was full, since the server started.
    var droppedCount: Int { queue.withLock { $0.dropped } }

    /// Items waiting to be written.
    var queueDepth: Int { queue.withLock { $0.items.count } }

    /// Messages were accepted (stored for these recipients). Never blocks.
    func accepted(_ messages: some Sequence<Accepted>) {
        enqueue(messages.lazy.map { Item.accepted($0) })
    }

    /// Recipients acknowledged these messages. Never blocks.
    func delivered(_ deliveries: some Sequence<(sender: UserID, messageID: MessageID, recipient: UserID, at: Date)>) {
        enqueue(
            deliveries.lazy.map {
                Item.delivered(sender: $0.sender, messageID: $0.messageID, recipient: $0.recipient, at: $0.at)
            })
    }

    /// Records entries of any kind, for instance ``/ParleyCore/HistoryKind/file`` entries of a
    /// file transfer (its description as body), with the same guarantees as messages: in the
    /// background, dropped and counted when the queue is full. Never blocks.
    func record(_ entries: some Sequence<HistoryEntry>) {
        enqueue(entries.lazy.map { Item.entry($0) })
    }

    private func enqueue(_ items: some Sequence<Item>) {
        let (start, full, logDropped) = queue.withLock { queue -> (Bool, Bool, Int?) in
            guard !queue.stopped else { return (false, false, nil) }
            let before = queue.items.count
            var droppedNow = 0
            for item in items {
                if queue.items.count < capacity {
                    queue.items.append(item)
                } else {
                    droppedNow += 1
                }
            }
            var logDropped: Int?
            if droppedNow > 0 {
                queue.dropped += droppedNow
                let now = ContinuousClock.now
                if queue.lastDropLog.map({ now - $0 >= dropLogInterval }) ?? true {
                    queue.lastDropLog = now
                    logDropped = queue.dropped
                }
            }
            let full = before < maximumBatch && queue.items.count >= maximumBatch
            guard !queue.running, !queue.items.isEmpty else { return (false, full, logDropped) }
            queue.running = true
            return (true, full, logDropped)
        }
        if let logDropped {
            logger.warning(
                "the history queue is full: entries dropped (the message path goes on)",
                metadata: ["history.dropped": "\(logDropped)", "history.capacity": "\(capacity)"]
            )
        }
        if start { worker.submit { [self] _ in drain() } }
        if full { wakeWorker() }
    }

    private func wakeWorker() {
        // Under the condition's lock, so a worker between its check and its wait cannot miss it.
        wake.lock()
        wake.signal()
        wake.unlock()
    }

    /// Waits until the round has gathered a full batch, someone waits for the writes, or
    /// ``gatherInterval`` has passed.
    private func gather() {
        let deadline = Date(timeIntervalSinceNow: gatherInterval)
        wake.lock()
        defer { wake.unlock() }
        while !queue.withLock({ $0.items.count >= maximumBatch || $0.urgent > 0 || $0.stopped }) {
            if !wake.wait(until: deadline) { return }
        }
    }

    /// Runs `work` with the worker told not to gather meanwhile.
    private func urgently<T>(_ work: () async throws -> T) async rethrows -> T {
        beginUrgent()
        defer { endUrgent() }
        return try await work()
    }

    /// The writer stops gathering and writes at once until ``endUrgent()``: someone waits.
    private func beginUrgent() {
        queue.withLock { $0.urgent += 1 }
        wakeWorker()
    }

    private func endUrgent() {
        queue.withLock { $0.urgent -= 1 }
    }

    private func drain() {
        while true {
            gather()
            let batch = queue.withLock { queue -> [Item] in
                let batch = Array(queue.items.prefix(maximumBatch))
                queue.items.removeFirst(batch.count)
                if batch.isEmpty { queue.running = false }
                return batch
            }
            if batch.isEmpty { return }
            write(batch)
        }
    }

    private func write(_ batch: [Item]) {
        var entries: [HistoryEntry] = []
        entries.reserveCapacity(batch.count)
        var delivered: [HistoryJournal.Delivery] = []
        for item in batch {
            switch item {
            case .accepted(let message):
                entries.append(
                    HistoryEntry(
                        messageID: message.messageID,
                        sender: message.sender,
                        recipient: message.recipient,
                        kind: message.isText ? .text : .binary,
                        body: message.body,
                        sentAt: message.sentAt
                    )
                )
            case .entry(let entry):
                entries.append(entry)
            case .delivered(let sender, let messageID, let recipient, let at):
                delivered.append((sender, messageID, recipient, at))
            }
        }
        // An acknowledgement of a message accepted in the same round (an online recipient, the
        // usual case) becomes the entry's delivery time: one journal row instead of two.
        (entries, delivered) = HistoryStore.merge(entries, delivered)
        do {
            try journal.append(entries, delivered: delivered)
            queue.withLock { queue in
                queue.lastAppend = .now
                queue.backlog += entries.count + delivered.count
            }
        } catch {
            // History is a record, not the message path: the batch is lost and counted.
            queue.withLock { $0.dropped += batch.count }
            logger.warning(
                "writing history failed", metadata: ["error": "\(error)", "history.items": "\(batch.count)"])
        }
        trimJournal()
        startIndexing()
    }

    /// Deletes the indexed rows from the journal (on the writer's thread: the journal's write
    /// lock is never held by the low-priority indexer).
    private func trimJournal() {
        let through = queue.withLock { queue -> Int64? in
            guard queue.indexedThrough > queue.trimmedThrough else { return nil }
            queue.trimmedThrough = queue.indexedThrough
            return queue.indexedThrough
        }
        guard let through else { return }
        do {
            try journal.deleteThrough(through)
        } catch {
            logger.warning("trimming the history journal failed", metadata: ["error": "\(error)"])
        }
    }

    /// Wakes the indexer, unless it runs: it goes on while rounds are appended.
    private func startIndexing() {
        let start = queue.withLock { queue -> Bool in
            queue.appended += 1
            guard !queue.indexing, !queue.stopped else { return false }
            queue.indexing = true
            return true
        }
        if start { indexer.submit { [self] _ in index() } }
    }

    /// The indexer's loop: moves the journal into the history until nothing new was appended
    /// since it last found the journal empty.
    private func index() {
        while true {
            let (seen, stopped) = queue.withLock { ($0.appended, $0.stopped) }
            if stopped {
                queue.withLock { $0.indexing = false }
                return
            }
            if waitsForAQuietMoment() {
                Thread.sleep(forTimeInterval: 0.1)
                continue
            }
            if indexOnce() > 0 { continue }
            let done = queue.withLock { queue -> Bool in
                guard queue.appended == seen || queue.stopped else { return false }
                queue.indexing = false
                return true
            }
            if done {
                // Caught up: the writer deletes what was indexed, also when no round follows.
                worker.submit { [self] state in
                    if case .active = state { trimJournal() }
                }
                return
            }
        }
    }

    /// Whether the indexer waits: the writer appended within ``quietInterval`` (the message path
    /// is busy) and the journal holds fewer than ``maximumBacklog`` rows. A burst is indexed
    /// after it, without slowing it; a load that goes on is indexed alongside once the backlog
    /// is reached.
    private func waitsForAQuietMoment() -> Bool {
        queue.withLock { queue in
            queue.urgent == 0 && queue.backlog > 0 && queue.backlog < maximumBacklog
                && ContinuousClock.now - queue.lastAppend < quietInterval
        }
    }

    /// Indexes one batch of the journal on the calling thread; returns how many rows it moved.
    @discardableResult
    private func indexOnce() -> Int {
        do {
            let applied = try store.apply(journal, limit: indexBatch)
            if applied.unreadable > 0 {
                queue.withLock { $0.dropped += applied.unreadable }
                logger.warning(
                    "damaged history journal rows skipped", metadata: ["history.rows": "\(applied.unreadable)"])
            }
            queue.withLock { $0.indexedThrough = max($0.indexedThrough, applied.lastSequence) }
            queue.withLock { $0.backlog = max(0, $0.backlog - applied.rows) }
            return applied.rows
        } catch {
            logger.warning("indexing the history journal failed", metadata: ["error": "\(error)"])
            return 0
        }
    }

    /// Indexes everything the journal holds, on the calling thread (at its priority), for at
    /// most `limit`.
    private func indexAll(within limit: Duration = .seconds(3600)) {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline, indexOnce() > 0 {}
    }

    /// Deletes entries older than the retention period (on the worker thread, between writes).
    func sweep(now: Date = Date()) async throws(ParleyError) -> Int {
        let cutoff = now.addingTimeInterval(-retention.timeInterval)
        let store = self.store
        do {
            return try await worker.runIfActive { try store.sweep(before: cutoff) }
        } catch {
            throw error as? ParleyError
                ?? ParleyError(code: .storageError, message: "sweeping history failed", cause: error)
        }
    }

    /// Waits until everything queued so far is written and indexed (for at most `limit`): a task
    /// on the writer thread runs after the drain that writes it (a drain empties the queue before
    /// it returns), and indexes the journal.
    func flush(indexingFor limit: Duration = .seconds(3600)) async {
        do {
            try await urgently { try await worker.runIfActive { [self] in indexAll(within: limit) } }
        } catch {
            logger.debug("the history worker has stopped", metadata: ["error": "\(error)"])
        }
    }

    /// Blocks the calling thread (a blocking-pool thread, never an event loop) until everything
    /// queued so far is written and indexed, so a search sees every message accepted before it.
    /// The indexing runs on this thread, at its priority.
    func waitForPendingWrites() {
        beginUrgent()
        defer { endUrgent() }
        let written = DispatchSemaphore(value: 0)
        worker.submit { _ in written.signal() }
        written.wait()
        indexAll()
    }

    /// Writes what is queued and indexes what it can within 2 s (the rest waits in the journal
    /// for the next start), then refuses new items.
    func shutdown() async {
        queue.withLock { $0.stopped = true }
        wakeWorker()
        // What is not indexed within a moment stays in the journal for the next start.
        await flush(indexingFor: .seconds(2))
        do {
            try await worker.shutdownGracefully()
            try await indexer.shutdownGracefully()
        } catch {
            logger.debug("stopping the history worker failed", metadata: ["error": "\(error)"])
        }
    }
}
