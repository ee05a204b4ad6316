import Dispatch
import Foundation
import Logging
import NIOPosix
import ParleyCore
import ParleyStore
import Synchronization

/// Writes message history in the background: the message path hands it what was accepted and
/// what was acknowledged, and one worker thread of its own writes whatever has accumulated into
/// the history file (``/ParleyStore/HistoryStore``) in one transaction per round.
///
/// A round gathers for up to ``gatherInterval`` (or until ``maximumBatch`` items wait) before it
/// writes: large transactions are what make history cheap. Each transaction adds a segment to
/// the FTS5 index that SQLite later merges, and an acknowledgement that arrives in the same
/// round as its message becomes the entry's delivery time instead of a second write of the row.
/// A search never sees the delay: it asks for what is queued to be written first
/// (``waitForPendingWrites()``), which ends the gathering at once.
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
    }

    let store: HistoryStore
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
    let logger: Logger

    init(store: HistoryStore, retention: Duration, capacity: Int, logger: Logger) {
        self.store = store
        self.retention = retention
        self.capacity = capacity
        self.logger = logger
        worker.start()
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
            logger.info(
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
        queue.withLock { $0.urgent += 1 }
        wakeWorker()
        defer { queue.withLock { $0.urgent -= 1 } }
        return try await work()
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

    /// What identifies an entry: one message for one recipient.
    private struct EntryKey: Hashable {
        var sender: UserID
        var messageID: MessageID
        var recipient: UserID
    }

    private func write(_ batch: [Item]) {
        var entries: [HistoryEntry] = []
        entries.reserveCapacity(batch.count)
        // Where each message of this batch is in `entries`: an acknowledgement of a message
        // accepted in the same batch (an online recipient, the usual case) becomes the entry's
        // delivery time instead of an UPDATE after the INSERT.
        var accepted: [EntryKey: Int] = [:]
        var delivered: [(sender: UserID, messageID: MessageID, recipient: UserID, at: Date)] = []
        for item in batch {
            switch item {
            case .accepted(let message):
                accepted[EntryKey(sender: message.sender, messageID: message.messageID, recipient: message.recipient)] =
                    entries.count
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
                if let index = accepted[EntryKey(sender: sender, messageID: messageID, recipient: recipient)] {
                    if entries[index].deliveredAt == nil { entries[index].deliveredAt = at }
                } else {
                    delivered.append((sender, messageID, recipient, at))
                }
            }
        }
        do {
            try store.record(entries, delivered: delivered)
        } catch {
            // History is a record, not the message path: the batch is lost and counted.
            queue.withLock { $0.dropped += batch.count }
            logger.info("writing history failed", metadata: ["error": "\(error)", "history.items": "\(batch.count)"])
        }
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

    /// Waits until everything queued so far is written: a task on the worker thread runs after
    /// the drain that writes it (a drain empties the queue before it returns).
    func flush() async {
        do {
            try await urgently { try await worker.runIfActive {} }
        } catch {
            logger.debug("the history worker has stopped", metadata: ["error": "\(error)"])
        }
    }

    /// Blocks the calling thread (a blocking-pool thread, never an event loop) until everything
    /// queued so far is written, so a search sees every message accepted before it.
    func waitForPendingWrites() {
        queue.withLock { $0.urgent += 1 }
        wakeWorker()
        defer { queue.withLock { $0.urgent -= 1 } }
        let written = DispatchSemaphore(value: 0)
        worker.submit { _ in written.signal() }
        written.wait()
    }

    /// Writes what is queued, then refuses new items.
    func shutdown() async {
        queue.withLock { $0.stopped = true }
        wakeWorker()
        await flush()
        do {
            try await worker.shutdownGracefully()
        } catch {
            logger.debug("stopping the history worker failed", metadata: ["error": "\(error)"])
        }
    }
}
