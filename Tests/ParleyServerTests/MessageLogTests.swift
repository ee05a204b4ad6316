import Foundation
import Logging
import NIOCore
import ParleyCore
import ParleyServerStore
import Testing

@testable import ParleyServer

/// The message log on real files in a temporary directory: what one instance writes, a fresh
/// one reads back (as after a `kill -9`: nothing is closed in between).
@Suite struct MessageLogTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("parley-log-\(UUID())").path
    let users: Set<UserID> = Set((1...20).map { UserID(UInt32($0)) })

    func open(segmentSize: Int64 = 32 << 20, window: Duration = .seconds(3600), now: Date = Date()) throws -> MessageLog
    {
        let users = self.users
        return try MessageLog(
            configuration: .init(directory: directory, deduplicationWindow: window, segmentSize: segmentSize),
            logger: Logger(label: "parley.test.log"),
            now: now,
            existingUsers: { ids throws(ParleyError) in Set(ids.filter(users.contains)) }
        )
    }

    func message(_ id: UInt64, from sender: UInt32 = 1, to recipients: [UInt32], body: String? = nil) -> NewMessage {
        let ids = recipients.map { UserID($0) }
        return NewMessage(
            messageID: MessageID(id), sender: UserID(sender), recipients: ids, allRecipients: ids, isText: true,
            body: ByteBuffer(string: body ?? "message \(id)"), sentAt: Date(timeIntervalSince1970: 1_700_000_000),
            wantsReceipt: id % 2 == 0
        )
    }

    func store(_ log: MessageLog, _ messages: [NewMessage], now: Date = Date()) throws -> [[StoredDelivery]] {
        try log.acknowledgeAndStore(acknowledgements: [], messages: messages, now: now).stored
    }

    func acknowledge(
        _ log: MessageLog, _ recipient: UInt32, _ ids: [UInt64], from sender: UInt32 = 1, now: Date = Date()
    )
        throws -> [AcknowledgedMessage]
    {
        try log.acknowledgeAndStore(
            acknowledgements: [(UserID(recipient), ids.map { (UserID(sender), MessageID($0)) })], messages: [], now: now
        ).acknowledged
    }

    func pendingIDs(_ log: MessageLog, _ recipient: UInt32) throws -> [UInt64] {
        try log.pendingMessages(for: UserID(recipient), after: 0, limit: 100_000).map(\.messageID.rawValue)
    }

    @Test func crcMatchesZlib() {
        let value = Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) }
        #expect(value == 0xCBF4_3926)
        let long = [UInt8](repeating: 0xA5, count: 1000).withUnsafeBytes { CRC32.checksum($0) }
        #expect(long == 0x2156_B7DC)
    }

    @Test func recordsRoundTrip() throws {
        let records: [MessageLogRecord] = [
            .header(nextSequence: 42),
            .stored(
                .init(
                    sender: UserID(7), messageID: MessageID(.max), isText: false, wantsReceipt: true, sentAt: -5,
                    storedAt: 1_700_000_000_000, allRecipients: [UserID(1), UserID(2)],
                    deliveries: [.init(recipient: UserID(2), sequence: 9)], body: [0, 1, 2, 255]
                )
            ),
            .acknowledged(.init(recipient: UserID(2), sender: UserID(7), messageID: MessageID(3), sequence: 9, at: 12)),
            .dropped(recipient: UserID(4)),
        ]
        for record in records {
            var buffer = ByteBuffer()
            let length = record.write(to: &buffer)
            #expect(length == buffer.readableBytes)
            if case .acknowledged = record { #expect(length == MessageLogRecord.acknowledgementLength) }
            let bytes = Array(buffer.readableBytesView)
            #expect(bytes.withUnsafeBytes { MessageLogRecord.read(from: $0) } == .record(record, length: length))
            // Cut anywhere: incomplete, never a wrong record.
            for cut in 0..<bytes.count {
                let result = Array(bytes[..<cut]).withUnsafeBytes { MessageLogRecord.read(from: $0) }
                #expect(result == .incomplete)
            }
            // One byte flipped anywhere: damaged or incomplete, never a record.
            for position in 0..<bytes.count {
                var flipped = bytes
                flipped[position] ^= 0x40
                let result = flipped.withUnsafeBytes { MessageLogRecord.read(from: $0) }
                if case .record = result { Issue.record("a flipped byte at \(position) read as a record") }
            }
        }
    }

    @Test func pendingMessagesSurviveReopening() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try open()
        let stored = try store(log, [message(1, to: [2, 3]), message(2, to: [2]), message(3, to: [99, 3])])
        #expect(stored.map { $0.map(\.recipient.rawValue) } == [[2, 3], [2], [3]])
        #expect(stored.flatMap { $0 }.allSatisfy { !$0.duplicate })
        let sequences = stored.flatMap { $0 }.map(\.sequence)
        #expect(sequences == sequences.sorted() && Set(sequences).count == sequences.count)
        let acknowledged = try acknowledge(log, 2, [1])
        #expect(acknowledged.map(\.messageID.rawValue) == [1])
        #expect(try acknowledge(log, 2, [1]).isEmpty)

        let reopened = try open()
        #expect(try pendingIDs(reopened, 2) == [2])
        #expect(try pendingIDs(reopened, 3) == [1, 3])
        #expect(reopened.pendingMessageCount(for: UserID(3)) == 2)
        let first = try #require(try reopened.pendingMessages(for: UserID(3), after: 0, limit: 1).first)
        #expect(first.body == Array("message 1".utf8))
        #expect(first.recipients == [UserID(2), UserID(3)])
        #expect(first.sentAt == Date(timeIntervalSince1970: 1_700_000_000))
        // Paging by sequence.
        let rest = try reopened.pendingMessages(for: UserID(3), after: first.sequence, limit: 10)
        #expect(rest.map(\.messageID.rawValue) == [3])
        // New sequences stay above every earlier one.
        let later = try store(reopened, [message(4, to: [2])])
        #expect(try #require(later.first?.first).sequence > sequences.max()!)
    }

    @Test func resendsAreDuplicatesAcrossReopening() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try open()
        _ = try store(log, [message(1, to: [2]), message(2, to: [2])])
        _ = try acknowledge(log, 2, [1])
        // In the same round twice.
        let same = try store(log, [message(5, to: [2]), message(5, to: [2])])
        #expect(same[0][0].duplicate == false && same[1][0].duplicate == true)
        #expect(same[0][0].sequence == same[1][0].sequence)

        let reopened = try open()
        let again = try store(reopened, [message(1, to: [2]), message(2, to: [2]), message(3, to: [2])])
        #expect(again[0][0].duplicate && again[0][0].alreadyAcknowledged)
        #expect(again[1][0].duplicate && !again[1][0].alreadyAcknowledged)
        #expect(!again[2][0].duplicate)
        #expect(try pendingIDs(reopened, 2) == [2, 5, 3])
    }

    @Test func aTornTailIsCutAndTheRestKept() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try open()
        _ = try store(log, [message(1, to: [2])])
        let segment = directory + "/" + MessageLogSegment.fileName(1)
        let before = try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int
        // Half of a record, as a crash in the middle of a write leaves it.
        var buffer = ByteBuffer()
        MessageLogRecord.stored(
            .init(
                sender: UserID(1), messageID: MessageID(9), isText: true, wantsReceipt: false, sentAt: 0, storedAt: 0,
                allRecipients: [UserID(2)], deliveries: [.init(recipient: UserID(2), sequence: 100)], body: [1, 2, 3]
            )
        ).write(to: &buffer)
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        handle.seekToEndOfFile()
        handle.write(Data(buffer.readableBytesView.prefix(buffer.readableBytes - 3)))
        handle.closeFile()

        let reopened = try open()
        #expect(try pendingIDs(reopened, 2) == [1])
        #expect(try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int == before)
        _ = try store(reopened, [message(2, to: [2])])
        #expect(try pendingIDs(try open(), 2) == [1, 2])
    }

    @Test func damageBeforeTheLastSegmentRefusesToOpen() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try open(segmentSize: 256)
        for id in 1...10 {
            _ = try store(log, [message(UInt64(id), to: [2], body: String(repeating: "x", count: 100))])
        }
        #expect(log.statistics.segments > 2)
        let first = directory + "/" + MessageLogSegment.fileName(1)
        var bytes = try #require(FileManager.default.contents(atPath: first))
        bytes[bytes.count - 5] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: first))
        let error = try #require(throws: ParleyError.self) { _ = try open(segmentSize: 256) }
        #expect(error.code == .storageError)
        #expect(error.message.contains("damaged"))
    }

    /// Stores message `id` for user 2, who acknowledges it at once, or every hundredth for user 3,
    /// who never does (`kept`).
    private func trafficRound(_ log: MessageLog, _ id: Int, kept: inout [UInt64]) throws {
        let recipient: UInt32 = id % 100 == 0 ? 3 : 2
        _ = try store(log, [message(UInt64(id), to: [recipient], body: String(repeating: "b", count: 64))])
        if recipient == 2 {
            _ = try acknowledge(log, 2, [UInt64(id)])
        } else {
            kept.append(UInt64(id))
        }
    }

    @Test func compactionKeepsWhatIsNeededAndFreesTheRest() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try open(segmentSize: 4096)
        var kept: [UInt64] = []
        for id in 1...2000 {
            try trafficRound(log, id, kept: &kept)
            try log.compact()
        }
        let statistics = log.statistics
        #expect(statistics.pendingDeliveries == 20)
        #expect(statistics.rememberedDeliveries == 1980)
        // Bounded by what is needed (twice the live bytes plus a segment or two), not the traffic.
        #expect(statistics.bytes <= 2 * statistics.liveBytes + 3 * 4096 + 4096)
        #expect(try pendingIDs(log, 3) == kept)

        let reopened = try open(segmentSize: 4096)
        #expect(try pendingIDs(reopened, 3) == kept)
        #expect(reopened.statistics.pendingDeliveries == 20)
        #expect(reopened.statistics.rememberedDeliveries == 1980)
        let resent = try store(reopened, [message(1, to: [2]), message(100, to: [3])])
        #expect(resent[0][0].duplicate && resent[0][0].alreadyAcknowledged)
        #expect(resent[1][0].duplicate && !resent[1][0].alreadyAcknowledged)
    }

    @Test func compactionInSlicesKeepsWhatIsNeededAcrossACrash() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try open(segmentSize: 4096)
        var kept: [UInt64] = []
        var sliced = 0
        var reopenedMidway = false
        for id in 1...2000 {
            try trafficRound(log, id, kept: &kept)
            try log.compact(budget: 5)  // a few records per round: segments take several rounds
            if log.statistics.compacting {
                sliced += 1
                if !reopenedMidway && id > 1000 {
                    // What a crash in the middle of a compaction leaves: some records twice.
                    reopenedMidway = true
                    let reopened = try open(segmentSize: 4096)
                    #expect(try pendingIDs(reopened, 3) == kept)
                    #expect(reopened.statistics.pendingDeliveries == kept.count)
                    #expect(reopened.statistics.rememberedDeliveries == id - kept.count)
                }
            }
        }
        #expect(sliced > 100)
        #expect(reopenedMidway)
        let statistics = log.statistics
        #expect(statistics.pendingDeliveries == 20)
        #expect(statistics.rememberedDeliveries == 1980)
        #expect(try pendingIDs(log, 3) == kept)
        try log.compact()
        #expect(!log.statistics.compacting)
        #expect(log.statistics.bytes <= 2 * log.statistics.liveBytes + 3 * 4096 + 4096)

        let reopened = try open(segmentSize: 4096)
        #expect(try pendingIDs(reopened, 3) == kept)
        #expect(reopened.statistics.rememberedDeliveries == 1980)
        let resent = try store(reopened, [message(1, to: [2]), message(100, to: [3])])
        #expect(resent[0][0].duplicate && resent[0][0].alreadyAcknowledged)
        #expect(resent[1][0].duplicate && !resent[1][0].alreadyAcknowledged)
    }

    @Test func pruningForgetsOldAcknowledgementsAndFreesTheirSegments() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let log = try open(segmentSize: 1024, window: .seconds(60), now: start)
        for id in 1...200 {
            _ = try store(log, [message(UInt64(id), to: [2])], now: start)
            _ = try acknowledge(log, 2, [UInt64(id)], now: start)
        }
        _ = try store(log, [message(500, to: [4])], now: start)
        #expect(try log.pruneAcknowledged(now: start.addingTimeInterval(30)) == 0)
        #expect(try log.pruneAcknowledged(now: start.addingTimeInterval(61)) == 200)
        let statistics = log.statistics
        #expect(statistics.rememberedDeliveries == 0)
        #expect(statistics.bytes <= 3 * 1024)
        // Forgotten: the same ID is a new message now.
        let again = try store(log, [message(1, to: [2])], now: start.addingTimeInterval(62))
        #expect(!again[0][0].duplicate)
        #expect(
            try pendingIDs(try open(segmentSize: 1024, window: .seconds(60), now: start.addingTimeInterval(62)), 4) == [
                500
            ])
    }

    @Test func droppedUsersStayDropped() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try open()
        _ = try store(log, [message(1, to: [2, 3]), message(2, to: [3])])
        _ = try acknowledge(log, 3, [2])
        try log.dropMessages(for: UserID(3))
        #expect(try pendingIDs(log, 3).isEmpty)
        let reopened = try open()
        #expect(try pendingIDs(reopened, 3).isEmpty)
        #expect(try pendingIDs(reopened, 2) == [1])
        #expect(reopened.statistics.rememberedDeliveries == 0)
    }

    @Test func messagesKeptInSQLiteMoveToTheLog() async throws {
        let server = try TestServer { $0.messageStorage = .sqlite }
        defer { Task { await server.close() } }
        let store = server.context.store
        let alice = try store.registerUser(
            UserInfo(userName: "alice"), passwordHash: "h", requestedID: nil, minimumID: 1000, now: Date()
        ).userID
        let bob = try store.registerUser(
            UserInfo(userName: "bob"), passwordHash: "h", requestedID: nil, minimumID: 1000, now: Date()
        ).userID
        let stored = try store.storeMessages(
            [
                NewMessage(
                    messageID: MessageID(1), sender: alice, recipients: [bob], allRecipients: [bob], isText: true,
                    body: ByteBuffer(bytes: [1]), sentAt: Date(), wantsReceipt: false),
                NewMessage(
                    messageID: MessageID(2), sender: alice, recipients: [bob], allRecipients: [bob], isText: true,
                    body: ByteBuffer(bytes: [2]), sentAt: Date(), wantsReceipt: false),
            ],
            now: Date()
        )
        _ = try store.acknowledge(recipient: bob, messages: [(alice, MessageID(1))], now: Date())
        var configuration = server.context.configuration
        configuration.messageStorage = .log
        let log = try ParleyServer.openMessages(configuration, store: store, logger: Logger(label: "parley.test"))
        let pending = try log.pendingMessages(for: bob, after: 0, limit: 10)
        #expect(pending.map(\.messageID) == [MessageID(2)])
        #expect(pending.first?.sequence == stored[1][0].sequence)
        #expect(try store.pendingMessageCount(for: bob) == 0)
        let resent = try log.acknowledgeAndStore(
            acknowledgements: [],
            submissions: [
                MessageCommitter.Submission(
                    message: NewMessage(
                        messageID: MessageID(1), sender: alice, recipients: [bob], allRecipients: [bob], isText: true,
                        body: ByteBuffer(bytes: [1]), sentAt: Date(), wantsReceipt: false)
                ) { _ in }
            ],
            now: Date()
        ).stored
        #expect(resent[0][0].duplicate && resent[0][0].alreadyAcknowledged)
        // Back to SQLite while the log holds messages: refused.
        configuration.messageStorage = .sqlite
        let error = try #require(throws: ParleyError.self) {
            _ = try ParleyServer.openMessages(configuration, store: store, logger: Logger(label: "parley.test"))
        }
        #expect(error.message.contains("message log"))
    }
}
