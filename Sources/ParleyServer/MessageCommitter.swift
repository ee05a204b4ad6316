import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleyServerStore
import ParleyWire
import Synchronization

/// Group commit for the message path: every SEND_MESSAGE and ACK_MESSAGES is queued here, and
/// whatever has accumulated is written in one round. Senders get their answer only after the
/// commit, so an acknowledged message survives a crash.
///
/// Rounds run one at a time, strictly in queue order: on the committer's worker thread, or, for
/// a small wave while the worker is idle, on the event loop that read it (see
/// ``handOver(_:atEndOfTick:)``). Live notifications are issued by the round in commit order, so
/// every session sees its messages in sequence order.
final class MessageCommitter: Sendable {
    /// What happened to one recipient of a submitted message.
    enum Outcome: Sendable {
        case stored(StoredDelivery)
        case recipientNotFound
    }

    /// What happened to each recipient of a message, in the message's order (usually one or
    /// a few: lists, not a dictionary). Made of the arrays the round has anyway: no allocation.
    struct Outcomes: Sendable {
        /// The message's recipients (registered or not), in its order.
        var recipients: [UserID] = []
        /// What the store kept, for the recipients that are users.
        var stored: [StoredDelivery] = []

        var count: Int { recipients.count }

        /// The outcome of the message's `index`th recipient.
        subscript(position index: Int) -> (recipient: UserID, outcome: Outcome) {
            let recipient = recipients[index]
            return (recipient, outcome(of: recipient))
        }

        subscript(recipient: UserID) -> Outcome? {
            recipients.contains(recipient) ? outcome(of: recipient) : nil
        }

        private func outcome(of recipient: UserID) -> Outcome {
            stored.first { $0.recipient == recipient }.map { .stored($0) } ?? .recipientNotFound
        }
    }

    typealias Result = Swift.Result<Outcomes, ParleyError>

    /// A reference, not a value: a submission passes from its event loop to the committer and
    /// on to the loops that answer and push it, and a copy of a value this size retains each
    /// of its references (recipient lists, body, session, request, closure) every time.
    ///
    /// Who waits for the outcome is kept in separate fields, not in one enum: reading the one
    /// that is needed (the sender's session on the committer, the request on the sender's loop)
    /// then retains that one alone, not every reference of the enum's payload (about 3 % of the
    /// event loop's time at saturation went to those copies).
    final class Submission: Sendable {
        let message: NewMessage
        /// A session's SEND_MESSAGE: the session, answered on its event loop
        /// (``ServerConnectionHandler/messageStored(_:_:)``), in one task with the round's other
        /// work for that loop. Nil for the server application's messages (`completion`).
        let sender: SessionHandle?
        /// The SEND_MESSAGE being answered (a session's submissions only).
        let request: Frame?
        /// What the server application already answered for itself (a session's submissions).
        let serverResults: [UserID: DeliveryResult.Status]
        /// Anyone else (the server application): called on the thread that ran the round
        /// (the committer's worker, or an event loop). Nil for a session's submissions.
        let completion: (@Sendable (Result) -> Void)?

        /// A submission whose outcome `completion` takes on the thread that ran its round.
        init(message: NewMessage, completion: @escaping @Sendable (Result) -> Void) {
            self.message = message
            self.sender = nil
            self.request = nil
            self.serverResults = [:]
            self.completion = completion
        }

        /// A session's SEND_MESSAGE, answered on the session's event loop.
        init(
            message: NewMessage,
            sender: SessionHandle,
            request: Frame,
            serverResults: [UserID: DeliveryResult.Status]
        ) {
            self.message = message
            self.sender = sender
            self.request = request
            self.serverResults = serverResults
            self.completion = nil
        }

        /// Answers at once, for a submission that is not committed (the server is stopping).
        func fail(_ error: ParleyError) {
            if let completion {
                completion(.failure(error))
            } else if let sender {
                sender.execute { $0.messageStored(self, .failure(error)) }
            }
        }
    }

    /// One committed round, shared read-only by the event loops that answer and push it: each
    /// loop's work refers into it by position, so the round's messages are not copied per item.
    private final class Round: Sendable {
        let submissions: [Submission]
        let stored: [[StoredDelivery]]
        let storedAt: Date

        init(submissions: [Submission], stored: [[StoredDelivery]], storedAt: Date) {
            self.submissions = submissions
            self.stored = stored
            self.storedAt = storedAt
        }

        func outcomes(of submission: Int) -> Outcomes {
            Outcomes(recipients: submissions[submission].message.recipients, stored: stored[submission])
        }

        func liveDelivery(submission: Int, delivery: Int) -> LiveDelivery {
            let stored = stored[submission][delivery]
            return LiveDelivery(
                recipient: stored.recipient,
                sequence: stored.sequence,
                submission: submissions[submission],
                storedAt: storedAt
            )
        }
    }

    /// The work of one round for one event loop, run there in one task.
    private enum LoopWork: Sendable {
        /// Answer the round's `submission`th message (its sender is a session on this loop).
        case answer(submission: Int)
        /// Push a delivery of the round to its recipient's session on this loop.
        case live(SessionHandle, submission: Int32, delivery: Int32)

        func run(_ round: Round) {
            switch self {
            case .answer(let index):
                let submission = round.submissions[index]
                submission.sender?.handlerOnLoop.messageStored(submission, .success(round.outcomes(of: index)))
            case .live(let session, let submission, let delivery):
                session.handlerOnLoop.liveDelivery(
                    round.liveDelivery(submission: Int(submission), delivery: Int(delivery)))
            }
        }
    }

    struct Acknowledgement: Sendable {
        var recipient: UserID
        var messages: [(sender: UserID, messageID: MessageID)]
    }

    /// A freshly stored delivery, for the recipient's session if it is online.
    struct LiveDelivery: Sendable {
        var recipient: UserID
        var sequence: Int64
        /// The message and its payload, by one reference: a copy of the message retained and
        /// released its three arrays and the payload per push (about 3 % of the event loop's
        /// time at saturation).
        var submission: Submission
        var storedAt: Date

        var message: NewMessage { submission.message }
        /// The body as it arrived, forwarded without another copy.
        var payload: ByteBuffer { submission.message.body }
    }

    /// What one event loop submitted in its current tick. A session's SEND_MESSAGE or
    /// ACK_MESSAGES is staged here, and the whole tick's work goes to the committer at the end
    /// of the tick (one lock, at most one wake-up of the worker), not message by message: the
    /// worker then commits the wave of messages the loop read in one round rather than waking at
    /// the first and taking the rest in several small rounds, and the round's answers and
    /// pushes reach each connection together (fewer socket writes at moderate rates).
    /// Touched only on its loop.
    private final class LoopStaging: @unchecked Sendable {
        var submissions: [Submission] = []
        var acknowledgements: [Acknowledgement] = []
        var handOverScheduled = false

        var isEmpty: Bool { submissions.isEmpty && acknowledgements.isEmpty }
    }

    private struct Queue {
        var submissions: [Submission] = []
        var acknowledgements: [Acknowledgement] = []
        var running = false
        var stopped = false
    }

    private let store: any MessageStore
    private let worker: NIOThreadPool
    /// Held while the store is written (a round, its upkeep, a prune, a user's drop): rounds
    /// run on the worker or on an event loop (``handOver(_:atEndOfTick:)``), the rest on the worker.
    private let storeAccess = Mutex(())
    /// Whether small rounds may run on the event loop that handed them over: the store's rounds
    /// do not wait for the disk (``MessageStore/roundsAreBrief``).
    private let roundsOnLoops: Bool
    private let queue = Mutex(Queue())
    /// `queue.running`, readable without the lock: whether the worker is in a round.
    private let isBusy = Atomic<Bool>(false)
    /// One staging area per event loop that submitted (a server has a few loops).
    private let stagings = Mutex<[(loop: ObjectIdentifier, staging: LoopStaging)]>([])
    private let logger: Logger
    private let registry: SessionRegistry
    /// Called with every round's new deliveries (the message history's hook); nil: nothing to call.
    private let accepted: (@Sendable ([LiveDelivery]) -> Void)?
    private let acknowledged: @Sendable ([AcknowledgedMessage]) -> Void
    private let metrics: ServerMetrics?
    /// Most items written per transaction, so one huge burst cannot delay answers for long.
    private let maximumBatch = 4096

    init(
        store: any MessageStore,
        logger: Logger,
        metrics: ServerMetrics? = nil,
        registry: SessionRegistry,
        accepted: (@Sendable ([LiveDelivery]) -> Void)? = nil,
        acknowledged: @escaping @Sendable ([AcknowledgedMessage]) -> Void
    ) {
        self.metrics = metrics
        self.store = store
        self.logger = logger
        self.registry = registry
        self.accepted = accepted
        self.acknowledged = acknowledged
        self.roundsOnLoops = store.roundsAreBrief
        self.worker = NIOThreadPool(numberOfThreads: 1)
        worker.start()
    }

    /// Submits from `loop`'s thread (a session's SEND_MESSAGE): staged with the rest of the
    /// loop's current tick and handed over in one go when the tick's reads are done (see
    /// ``LoopStaging``).
    func submit(_ submission: Submission, on loop: any EventLoop) {
        stage(on: loop, direct: { submit(submission) }, add: { $0.submissions.append(submission) })
    }

    /// Acknowledges from `loop`'s thread, staged like ``submit(_:on:)``.
    func acknowledge(_ acknowledgement: Acknowledgement, on loop: any EventLoop) {
        stage(on: loop, direct: { acknowledge(acknowledgement) }, add: { $0.acknowledgements.append(acknowledgement) })
    }

    /// Stages work of `loop` (`add`), or does `direct` when the worker is in a round and nothing
    /// of the loop is staged: the worker takes it when the round ends, without waiting for the
    /// end of the loop's tick (under heavy load the tick reads thousands), and nothing staged
    /// earlier can fall behind it.
    private func stage(on loop: any EventLoop, direct: () -> Void, add: (LoopStaging) -> Void) {
        let staging = staging(for: loop)
        if staging.isEmpty, isBusy.load(ordering: .relaxed) {
            direct()
            return
        }
        add(staging)
        if staging.submissions.count >= Self.largestStage {
            handOver(staging, atEndOfTick: false)
        } else {
            scheduleHandOver(staging, on: loop)
        }
    }

    private func staging(for loop: any EventLoop) -> LoopStaging {
        loop.preconditionInEventLoop()
        let identifier = ObjectIdentifier(loop)
        return stagings.withLock { stagings in
            if let found = stagings.first(where: { $0.loop == identifier }) { return found.staging }
            let staging = LoopStaging()
            stagings.append((identifier, staging))
            return staging
        }
    }

    private func scheduleHandOver(_ staging: LoopStaging, on loop: any EventLoop) {
        guard !staging.handOverScheduled else { return }
        staging.handOverScheduled = true
        loop.execute { [self] in
            staging.handOverScheduled = false
            handOver(staging, atEndOfTick: true)
        }
    }

    /// Submissions staged in one tick at most before they go to the worker anyway: under heavy
    /// load a tick reads thousands, and the worker should not wait idle for the end of it.
    ///
    /// 512, not 128: at 50,000 messages per second a disturbance (a slow round, a preempted
    /// loop) makes a few ticks read more than 128. With 128 those went to the worker, and the
    /// committer then stayed on the worker for 50-200 ms: two thread wake-ups per round, and the
    /// worker took the generator's core. Latencies rose to 10-17 ms while both cores had idle
    /// time. With 512 such ticks still commit on the loop. p99 was lower in 10 of 12 pairs
    /// (4.1-7.1 against 7.0-13.5 ms in a slow stretch of the machine); throughput at saturation
    /// was unchanged in four pairs.
    private static var largestStage: Int { 512 }

    /// Rounds of at most this many messages may run on the event loop that handed them over
    /// (see ``handOver(_:atEndOfTick:)``).
    private static var largestRoundOnLoop: Int { largestStage }

    /// Hands the staged work to the committer. At the end of a tick that read a small wave
    /// (``largestRoundOnLoop``) while the worker is idle, and if the store's rounds do not wait
    /// for the disk, the round runs right here on the event loop instead: at moderate rates
    /// that saves two thread wake-ups per round and, above all, a third busy thread on a
    /// machine of two cores, where the worker had to wait for a core (at 50,000 messages per
    /// second: p99 latency 2.9-4.0 ms instead of 4.9-5.5, the server's CPU 6 % less). Under
    /// heavy load a tick reads more than that (and hands over before its end), so rounds stay
    /// on the worker, beside the loop.
    private func handOver(_ staging: LoopStaging, atEndOfTick: Bool) {
        guard !staging.isEmpty else { return }
        let submissions = staging.submissions
        let acknowledgements = staging.acknowledgements
        staging.submissions = []
        staging.acknowledgements = []
        // A stage ends its tick below `largestStage` (it is handed over on reaching it).
        let accepted = enqueue(runningHere: atEndOfTick && roundsOnLoops) { queue in
            if queue.submissions.isEmpty {
                queue.submissions = submissions
            } else {
                queue.submissions.append(contentsOf: submissions)
            }
            queue.acknowledgements.append(contentsOf: acknowledgements)
        }
        if !accepted {
            for submission in submissions { submission.fail(Self.shuttingDown) }
        }
    }

    /// Runs what is queued as one round on the calling thread (an event loop that found the
    /// worker idle and took its place: `queue.running` is set), unless it is more than a small
    /// round or the store is busy (a prune, a user's drop on the worker): false, and the
    /// worker must take it.
    private func runRoundHere() -> Bool {
        let ran = storeAccess.withLockIfAvailable { _ -> Bool in
            let taken = queue.withLock { queue -> ([Submission], [Acknowledgement])? in
                guard queue.submissions.count <= Self.largestRoundOnLoop else { return nil }
                metrics?.commitQueueDepth.record(0)
                defer {
                    queue.submissions = []
                    queue.acknowledgements = []
                }
                return (queue.submissions, queue.acknowledgements)
            }
            guard let (submissions, acknowledgements) = taken else { return false }
            round(acknowledgements, submissions)
            return true
        }
        guard ran == true else { return false }
        // What arrived meanwhile (from other loops, the server application) goes to the worker.
        let more = queue.withLock { queue -> Bool in
            guard queue.submissions.isEmpty && queue.acknowledgements.isEmpty else { return true }
            queue.running = false
            isBusy.store(false, ordering: .relaxed)
            return false
        }
        if more { scheduleWork() }
        return true
    }

    /// Submits from any thread (the server application's messages).
    func submit(_ submission: Submission) {
        if !enqueue({ $0.submissions.append(submission) }) { submission.fail(Self.shuttingDown) }
    }

    func acknowledge(_ acknowledgement: Acknowledgement) {
        _ = enqueue { $0.acknowledgements.append(acknowledgement) }
    }

    /// Adds to the worker's queue (`add`, under its lock) and, if no round is running, starts
    /// one: here when `runningHere` allows and it is a small round (``runRoundHere()``), on the
    /// worker otherwise; false when the server is stopping and nothing was added.
    private func enqueue(runningHere: Bool = false, _ add: (inout Queue) -> Void) -> Bool {
        let start = queue.withLock { queue -> Bool? in
            guard !queue.stopped else { return nil }
            add(&queue)
            return startIfIdle(&queue)
        }
        if start == true, !(runningHere && runRoundHere()) { scheduleWork() }
        return start != nil
    }

    private static var shuttingDown: ParleyError {
        ParleyError(code: .shuttingDown, message: "the server is shutting down")
    }

    /// Messages waiting to be written.
    var queueDepth: Int { queue.withLock { $0.submissions.count } }

    /// Finishes what is queued, then refuses new work.
    func shutdown() async {
        queue.withLock { $0.stopped = true }
        // The worker drains the queue before it goes idle; wait for that.
        while queue.withLock({ $0.running || !$0.submissions.isEmpty || !$0.acknowledgements.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
        try? await worker.shutdownGracefully()
    }

    private func startIfIdle(_ queue: inout Queue) -> Bool {
        guard !queue.running else { return false }
        queue.running = true
        isBusy.store(true, ordering: .relaxed)
        return true
    }

    private func scheduleWork() {
        worker.submit { [self] state in
            guard state == .active else {
                failEverything()
                return
            }
            drain()
        }
    }

    private func failEverything() {
        let pending = queue.withLock { queue in
            defer {
                queue.submissions = []
                queue.acknowledgements = []
                queue.running = false
                isBusy.store(false, ordering: .relaxed)
            }
            return queue.submissions
        }
        for submission in pending {
            submission.fail(Self.shuttingDown)
        }
    }

    private func drain() {
        while true {
            let (submissions, acknowledgements) = queue.withLock { queue -> ([Submission], [Acknowledgement]) in
                let submissions: [Submission]
                if queue.submissions.count <= maximumBatch {
                    // The usual case: take the whole queue (no copy of each submission).
                    submissions = queue.submissions
                    queue.submissions = []
                    queue.submissions.reserveCapacity(submissions.count)
                } else {
                    submissions = Array(queue.submissions.prefix(maximumBatch))
                    queue.submissions.removeFirst(submissions.count)
                }
                metrics?.commitQueueDepth.record(queue.submissions.count)
                let acknowledgements = queue.acknowledgements
                queue.acknowledgements = []
                if submissions.isEmpty && acknowledgements.isEmpty {
                    queue.running = false
                    isBusy.store(false, ordering: .relaxed)
                }
                return (submissions, acknowledgements)
            }
            if submissions.isEmpty && acknowledgements.isEmpty { return }
            storeAccess.withLock { _ in round(acknowledgements, submissions) }
        }
    }

    /// One round and the store's upkeep after it (the caller holds `storeAccess`).
    private func round(_ acknowledgements: [Acknowledgement], _ submissions: [Submission]) {
        commit(acknowledgements, submissions)
        maintain(afterWriting: submissions.count + acknowledgements.reduce(0) { $0 + $1.messages.count })
    }

    /// The store's upkeep between rounds (the message log's compaction), in proportion to what
    /// the round wrote.
    private func maintain(afterWriting records: Int) {
        do {
            try store.maintain(afterWriting: records)
        } catch {
            metrics?.storageErrors.increment()
            logger.error("message store upkeep failed", metadata: ["error": "\(error)"])
        }
    }

    /// Drops everything the store keeps for a deleted user, on the committer's thread between
    /// rounds; returns when it is done.
    func dropMessages(for user: UserID) throws(ParleyError) {
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<ParleyError?>(nil)
        worker.submit { [self] state in
            defer { done.signal() }
            guard state == .active else {
                outcome.withLock { $0 = Self.shuttingDown }
                return
            }
            do throws(ParleyError) {
                try storeAccess.withLock { _ throws(ParleyError) in try store.dropMessages(for: user) }
            } catch {
                outcome.withLock { $0 = error }
            }
        }
        done.wait()
        if let error = outcome.withLock({ $0 }) { throw error }
    }

    /// One round: the acknowledgements, then the new messages, in one transaction. The
    /// acknowledgements go first: each refers to a delivery that was pushed, so committed, in an
    /// earlier round.
    private func commit(_ acknowledgements: [Acknowledgement], _ submissions: [Submission]) {
        let now = Date()
        let started = ContinuousClock.now
        defer {
            if !submissions.isEmpty { metrics?.commitBatchSize.record(submissions.count) }
            metrics?.commitDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
        }
        let acknowledged: [AcknowledgedMessage]
        let stored: [[StoredDelivery]]
        do {
            (acknowledged, stored) = try store.acknowledgeAndStore(
                acknowledgements: acknowledgements.map { ($0.recipient, $0.messages) },
                submissions: submissions,
                now: now
            )
        } catch {
            // The senders get the error as their answer (and send again); the acknowledged
            // messages stay pending and are delivered again at the next logon, where the
            // client's de-duplication drops them. The metrics count it for the admin.
            metrics?.storageErrors.increment()
            logger.info(
                "storing messages failed",
                metadata: [
                    "error": "\(error)", "messages": "\(submissions.count)",
                    "acknowledgements": "\(acknowledgements.count)",
                ]
            )
            for submission in submissions { submission.fail(error) }
            return
        }
        metrics?.messagesAcknowledged(acknowledged.count)
        if !acknowledged.isEmpty { self.acknowledged(acknowledged) }
        // One task per event loop for the whole round: answers first, then live deliveries, in
        // commit order, so every session still sees its messages in sequence order.
        let round = Round(submissions: submissions, stored: stored, storedAt: now)
        var work = LoopBatches<LoopWork>()
        var newDeliveries: [(submission: Int32, delivery: Int32, recipient: UserID)] = []
        newDeliveries.reserveCapacity(submissions.count)
        for (index, submission) in submissions.enumerated() {
            for (position, delivery) in stored[index].enumerated() where !delivery.duplicate {
                newDeliveries.append((Int32(index), Int32(position), delivery.recipient))
            }
            if let loop = submission.sender?.eventLoop {
                work.add(.answer(submission: index), on: loop)
            } else {
                submission.completion?(.success(round.outcomes(of: index)))
            }
        }
        metrics?.messagesStored(newDeliveries.count)
        if !newDeliveries.isEmpty {
            if let accepted {
                accepted(
                    newDeliveries.map { round.liveDelivery(submission: Int($0.submission), delivery: Int($0.delivery)) }
                )
            }
            let sessions = registry.sessions(for: newDeliveries.lazy.map(\.recipient))
            for (delivery, session) in zip(newDeliveries, sessions) {
                guard let session else { continue }
                work.add(
                    .live(session, submission: delivery.submission, delivery: delivery.delivery), on: session.eventLoop)
            }
        }
        work.run { $0.run(round) }
    }

    /// Forgets acknowledged messages older than the de-duplication window.
    func prune() {
        worker.submit { [self] state in
            guard state == .active else { return }
            do throws(ParleyError) {
                let removed = try storeAccess.withLock { _ throws(ParleyError) in
                    try store.pruneAcknowledged(now: Date())
                }
                if removed > 0 { logger.debug("pruned acknowledged messages", metadata: ["count": "\(removed)"]) }
            } catch {
                metrics?.storageErrors.increment()
                logger.info("pruning acknowledged messages failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Work gathered per event loop, then handed to each loop in one task.
struct LoopBatches<Item: Sendable> {
    private var batches: [(loop: any EventLoop, items: [Item])] = []

    mutating func add(_ item: Item, on loop: any EventLoop) {
        // A server has a few loops: a linear search beats hashing.
        if let index = batches.firstIndex(where: { $0.loop === loop }) {
            batches[index].items.append(item)
        } else {
            batches.append((loop, [item]))
        }
    }

    /// Runs `body` for every item on its loop, in the order added, one task per loop.
    func run(_ body: @escaping @Sendable (Item) -> Void) {
        for (loop, items) in batches {
            loop.execute {
                for item in items { body(item) }
            }
        }
    }
}
