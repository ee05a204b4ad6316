import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleyServerStore
import ParleyTesting
import Testing

@testable import ParleyServer

/// Where the committer runs a round: a small wave on the event loop that read it, when the
/// store's rounds do not wait for the disk and the worker is idle; everything else on its
/// worker thread. A real message log in a temporary directory, a real event loop.
@Suite struct MessageCommitterTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("parley-committer-\(UUID())").path
    static let sender = UserID(1)
    static let recipient = UserID(2)

    func log(synchronizes: Bool, segmentSize: Int64 = 8 << 20) throws -> MessageLog {
        try MessageLog(
            configuration: .init(directory: directory, synchronizes: synchronizes, segmentSize: segmentSize),
            logger: Logger(label: "parley.test.committer"),
            existingUsers: { ids throws(ParleyError) in Set(ids) }
        )
    }

    func committer(_ log: MessageLog) -> MessageCommitter {
        MessageCommitter(
            store: log, logger: Logger(label: "parley.test.committer"), registry: SessionRegistry(),
            acknowledged: { _ in })
    }

    struct Committed: Sendable {
        /// Whether the outcome came on the event loop that staged the message.
        var onLoop: Bool
        var sequence: Int64
    }

    /// Stages messages `ids` in one task of `loop`, as a session's reads do, and waits for
    /// their outcomes.
    func stage(_ ids: ClosedRange<UInt64>, on loop: any EventLoop, with committer: MessageCommitter)
        async throws -> [Committed]
    {
        let futures = try await loop.submit {
            ids.map { id in
                let promise = loop.makePromise(of: Committed.self)
                let message = NewMessage(
                    messageID: MessageID(id), sender: Self.sender, recipients: [Self.recipient],
                    allRecipients: [Self.recipient], isText: true, body: ByteBuffer(string: "message \(id)"),
                    sentAt: Date(),
                    wantsReceipt: false)
                let submission = MessageCommitter.Submission(message: message) { result in
                    switch result {
                    case .success(let outcomes):
                        guard case .stored(let delivery)? = outcomes[Self.recipient], !delivery.duplicate else {
                            promise.fail(ParleyError(code: .storageError, message: "message \(id) was not stored"))
                            return
                        }
                        promise.succeed(Committed(onLoop: loop.inEventLoop, sequence: delivery.sequence))
                    case .failure(let error):
                        promise.fail(error)
                    }
                }
                committer.submit(submission, on: loop)
                return promise.futureResult
            }
        }.get()
        return try await EventLoopFuture.whenAllSucceed(futures, on: loop).get()
    }

    /// Runs `body` with a committer over a fresh log and one event loop, then stops both.
    func withCommitter(
        synchronizes: Bool,
        segmentSize: Int64 = 8 << 20,
        _ body: (MessageLog, MessageCommitter, any EventLoop) async throws -> Void
    ) async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let log = try log(synchronizes: synchronizes, segmentSize: segmentSize)
        let committer = committer(log)
        let outcome: Result<Void, any Error>
        do {
            try await body(log, committer, group.next())
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        await committer.shutdown()
        try await group.shutdownGracefully()
        try outcome.get()
    }

    @Test func aSmallWaveIsCommittedOnTheLoopThatReadIt() async throws {
        try await withCommitter(synchronizes: false) { log, committer, loop in
            let first = try await stage(1...3, on: loop, with: committer)
            let second = try await stage(4...10, on: loop, with: committer)
            #expect((first + second).allSatisfy { $0.onLoop })
            #expect((first + second).map(\.sequence) == Array(1...10))
            let pending = log.pendingMessageCount(for: Self.recipient)
            #expect(pending == 10)
        }
    }

    @Test func aSynchronizedStoreCommitsOnTheWorker() async throws {
        try await withCommitter(synchronizes: true) { _, committer, loop in
            let committed = try await stage(1...3, on: loop, with: committer)
            #expect(committed.allSatisfy { !$0.onLoop })
            #expect(committed.map(\.sequence) == [1, 2, 3])
        }
    }

    /// A tick that reads more than a small wave hands it over before its end, to the worker;
    /// rounds on the loop and on the worker keep the order of the reads, and a prune on the
    /// worker meanwhile changes nothing of it.
    @Test func aLargeWaveGoesToTheWorkerInOrder() async throws {
        try await withCommitter(synchronizes: false) { log, committer, loop in
            let small = try await stage(1...5, on: loop, with: committer)
            committer.prune()
            let large = try await stage(6...1205, on: loop, with: committer)
            let after = try await stage(1206...1210, on: loop, with: committer)
            #expect(small.allSatisfy { $0.onLoop })
            #expect(large.prefix(512).allSatisfy { !$0.onLoop })
            #expect((small + large + after).map(\.sequence) == Array(1...1210))
            let pending = log.pendingMessageCount(for: Self.recipient)
            #expect(pending == 1210)
        }
    }

    /// Rounds on the loop keep up the log's upkeep (compaction), as the worker's do: the
    /// segments their acknowledgements made dead go away.
    @Test func roundsOnTheLoopKeepUpTheLogsUpkeep() async throws {
        try await withCommitter(synchronizes: false, segmentSize: 4096) { log, committer, loop in
            for wave in 0..<30 {
                let first = UInt64(wave * 10 + 1)
                let committed = try await stage(first...first + 9, on: loop, with: committer)
                #expect(committed.allSatisfy { $0.onLoop })
            }
            #expect(log.statistics.segments > 3)
            for wave in 0..<30 {
                let ids = (1...10).map { MessageID(UInt64(wave * 10 + $0)) }
                try await loop.submit {
                    committer.acknowledge(
                        .init(recipient: Self.recipient, messages: ids.map { (Self.sender, $0) }), on: loop)
                }.get()
            }
            try await eventually("every acknowledgement committed") {
                log.pendingMessageCount(for: Self.recipient) == 0
            }
            // The first segment holds messages only, all acknowledged now (their
            // acknowledgements are in later segments): nothing in it is needed any more.
            let first = directory + "/" + MessageLogSegment.fileName(1)
            try await eventually("the first segment removed", timeout: .seconds(10)) {
                !FileManager.default.fileExists(atPath: first)
            }
            #expect(log.statistics.rememberedDeliveries == 300)
        }
    }
}
