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
    }

    let store: HistoryStore
    /// How long entries are kept.
    let retention: Duration
    /// The most items waiting to be written; more are dropped.
    let capacity: Int
    /// Most items written per transaction.
    private let maximumBatch = 8192
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
        let (start, logDropped) = queue.withLock { queue -> (Bool, Int?) in
            guard !queue.stopped else { return (false, nil) }
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
            guard !queue.running, !queue.items.isEmpty else { return (false, logDropped) }
            queue.running = true
            return (true, logDropped)
        }
        if let logDropped {
            logger.info(
                "the history queue is full: entries dropped (the message path goes on)",
                metadata: ["history.dropped": "\(logDropped)", "history.capacity": "\(capacity)"]
            )
        }
        if start { worker.submit { [self] _ in drain() } }
    }

    private func drain() {
        while true {
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
        var delivered: [(sender: UserID, messageID: MessageID, recipient: UserID, at: Date)] = []
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
            try await worker.runIfActive {}
        } catch {
            logger.debug("the history worker has stopped", metadata: ["error": "\(error)"])
        }
    }

    /// Blocks the calling thread (a blocking-pool thread, never an event loop) until everything
    /// queued so far is written, so a search sees every message accepted before it.
    func waitForPendingWrites() {
        let written = DispatchSemaphore(value: 0)
        worker.submit { _ in written.signal() }
        written.wait()
    }

    /// Writes what is queued, then refuses new items.
    func shutdown() async {
        queue.withLock { $0.stopped = true }
        await flush()
        do {
            try await worker.shutdownGracefully()
        } catch {
            logger.debug("stopping the history worker failed", metadata: ["error": "\(error)"])
        }
    }
}
