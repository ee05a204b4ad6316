import Foundation
import GRDB
import NIOCore
import ParleyCore
import ParleyServerStore
import Synchronization
import Testing

@Suite struct MessageQueueTests {
    func message(
        _ id: MessageID,
        from sender: UserID,
        to recipients: [UserID],
        body: String = "hi",
        wantsReceipt: Bool = false
    ) -> NewMessage {
        NewMessage(
            messageID: id,
            sender: sender,
            recipients: recipients,
            allRecipients: recipients,
            isText: true,
            body: ByteBuffer(string: body),
            sentAt: now.addingTimeInterval(-1),
            wantsReceipt: wantsReceipt
        )
    }

    func rowCount(_ path: String, _ table: String) throws -> Int {
        try withRawDatabase(path) { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") ?? -1 }
    }

    @Test func storesABatchWithIncreasingSequences() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("a"), person("b"), person("c"))
            let (a, b, c) = (ids[0], ids[1], ids[2])
            let binary = NewMessage(
                messageID: MessageID(UInt64.max),
                sender: .server,
                recipients: [c],
                allRecipients: [c, 424_242],
                isText: false,
                body: ByteBuffer(bytes: [0, 255, 1]),
                sentAt: now,
                wantsReceipt: true
            )
            let batch = [message(1, from: a, to: [b, c]), binary, message(2, from: b, to: [a, b, c], body: "")]
            let stored = try store.storeMessages(batch, now: now)

            #expect(stored.map { $0.map(\.recipient) } == [[b, c], [c], [a, b, c]])
            let sequences = stored.flatMap { $0.map(\.sequence) }
            #expect(sequences == sequences.sorted() && Set(sequences).count == sequences.count)
            #expect(stored.flatMap { $0 }.allSatisfy { !$0.duplicate && !$0.alreadyAcknowledged })
            // One body per message, one delivery per recipient.
            #expect(try rowCount(path, "message") == 3)
            #expect(try rowCount(path, "delivery") == 6)

            let forC = try store.pendingMessages(for: c, after: 0, limit: 10)
            #expect(forC.map(\.sequence) == [stored[0][1].sequence, stored[1][0].sequence, stored[2][2].sequence])
            #expect(
                forC[1]
                    == PendingMessage(
                        sequence: stored[1][0].sequence,
                        messageID: MessageID(UInt64.max),
                        sender: .server,
                        recipients: [c, 424_242],
                        isText: false,
                        body: [0, 255, 1],
                        sentAt: Date(timeIntervalSince1970: 1_700_000_000.123),
                        storedAt: Date(timeIntervalSince1970: 1_700_000_000.123),
                        wantsReceipt: true
                    )
            )
            #expect(forC[0].body == Array("hi".utf8))
            #expect(forC[0].isText)
            #expect(forC[0].recipients == [b, c])
            #expect(forC[2].body == [])
            #expect(try store.pendingMessageCount(for: c) == 3)
            #expect(try store.pendingMessageCount(for: a) == 1)
            #expect(try store.storeMessages([], now: now) == [])
        }
    }

    @Test func unknownRecipientsFailTheBatch() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("a"))
            let error = #expect(throws: ParleyError.self) {
                try store.storeMessages(
                    [message(1, from: ids[0], to: [ids[0]]), message(2, from: ids[0], to: [999])], now: now)
            }
            #expect(error?.code == .recipientNotFound)
            #expect(try rowCount(path, "message") == 0)
            #expect(try rowCount(path, "delivery") == 0)
        }
    }

    @Test func duplicatesAreDetected() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("a"), person("b"), person("c"))
            let (a, b, c) = (ids[0], ids[1], ids[2])
            let batch = [message(10, from: a, to: [b, c]), message(11, from: a, to: [b])]
            let first = try store.storeMessages(batch, now: now)
            let second = try store.storeMessages(batch, now: now)
            #expect(second.map { $0.map(\.sequence) } == first.map { $0.map(\.sequence) })
            #expect(second.flatMap { $0 }.allSatisfy { $0.duplicate && !$0.alreadyAcknowledged })
            #expect(try rowCount(path, "message") == 2)
            #expect(try rowCount(path, "delivery") == 3)
            #expect(try store.pendingMessageCount(for: b) == 2)

            // The same message twice in one batch, and a resend to one more recipient.
            let mixed = try store.storeMessages(
                [message(12, from: a, to: [b]), message(12, from: a, to: [b]), message(10, from: a, to: [a, b])],
                now: now
            )
            #expect(mixed.map { $0.map(\.duplicate) } == [[false], [true], [false, true]])
            #expect(mixed[1][0].sequence == mixed[0][0].sequence)
            #expect(try store.pendingMessageCount(for: a) == 1)

            // The same message ID from another sender is another message.
            let other = try store.storeMessages([message(10, from: c, to: [b])], now: now)
            #expect(other[0][0].duplicate == false)

            _ = try store.acknowledge(recipient: b, messages: [(a, 10)], now: now)
            let afterAck = try store.storeMessages([message(10, from: a, to: [b, c])], now: now)
            #expect(
                afterAck[0] == [
                    StoredDelivery(
                        recipient: b, sequence: first[0][0].sequence, duplicate: true, alreadyAcknowledged: true),
                    StoredDelivery(
                        recipient: c, sequence: first[0][1].sequence, duplicate: true, alreadyAcknowledged: false),
                ])
            #expect(try store.pendingMessages(for: b, after: 0, limit: 10).map(\.messageID) == [11, 12, 10])
        }
    }

    @Test func pagesThroughPendingMessages() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("a"), person("b"), person("c"))
            let (a, b, c) = (ids[0], ids[1], ids[2])
            // Interleave other recipients' deliveries so sequences have gaps.
            let batch = (1...10).map {
                message(MessageID(UInt64($0)), from: a, to: $0.isMultiple(of: 3) ? [c, b] : [b])
            }
            _ = try store.storeMessages(batch, now: now)
            let all = try store.pendingMessages(for: b, after: 0, limit: 100)
            #expect(all.map(\.messageID.rawValue) == Array(1...10))
            #expect(all.map(\.sequence) == all.map(\.sequence).sorted())

            var paged: [PendingMessage] = []
            var cursor: Int64 = 0
            while true {
                let page = try store.pendingMessages(for: b, after: cursor, limit: 3)
                #expect(page.count <= 3)
                guard let last = page.last else { break }
                paged += page
                cursor = last.sequence
            }
            #expect(paged == all)
            #expect(try store.pendingMessages(for: b, after: all[4].sequence, limit: 2).map(\.messageID) == [6, 7])
            #expect(try store.pendingMessages(for: b, after: 0, limit: 0) == [])
            #expect(try store.pendingMessages(for: a, after: 0, limit: 10) == [])
        }
    }

    @Test func acknowledgesOnlyWhatIsPending() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("a"), person("b"), person("c"))
            let (a, b, c) = (ids[0], ids[1], ids[2])
            _ = try store.storeMessages(
                [
                    message(1, from: a, to: [b, c], wantsReceipt: true), message(2, from: a, to: [b]),
                    message(3, from: c, to: [b]),
                ],
                now: now
            )
            let later = now.addingTimeInterval(60)
            let acknowledged = try store.acknowledge(
                recipient: b,
                messages: [(a, 1), (a, 99), (c, 1), (c, 3), (a, 1)],
                now: later
            )
            #expect(
                acknowledged == [
                    AcknowledgedMessage(
                        sender: a, messageID: 1, recipient: b, wantsReceipt: true, acknowledgedAt: later),
                    AcknowledgedMessage(
                        sender: c, messageID: 3, recipient: b, wantsReceipt: false, acknowledgedAt: later),
                ]
            )
            #expect(try store.pendingMessages(for: b, after: 0, limit: 10).map(\.messageID) == [2])
            #expect(try store.pendingMessageCount(for: b) == 1)
            #expect(try store.acknowledge(recipient: b, messages: [(a, 1)], now: later) == [])
            #expect(try store.acknowledge(recipient: b, messages: [], now: later) == [])

            // Message 1 keeps its body while c has not acknowledged it; message 3 lost its body.
            #expect(try rowCount(path, "message") == 2)
            #expect(try store.pendingMessages(for: c, after: 0, limit: 10).map(\.body) == [Array("hi".utf8)])
            _ = try store.acknowledge(recipient: c, messages: [(a, 1)], now: later)
            _ = try store.acknowledge(recipient: b, messages: [(a, 2)], now: later)
            #expect(try rowCount(path, "message") == 0)
            // The tombstones stay for de-duplication.
            #expect(try rowCount(path, "delivery") == 4)
        }
    }

    @Test func acknowledgesSeveralRecipientsInOneBatch() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("a"), person("b"), person("c"))
            let (a, b, c) = (ids[0], ids[1], ids[2])
            _ = try store.storeMessages([message(1, from: a, to: [b, c]), message(2, from: b, to: [c])], now: now)
            let acknowledged = try store.acknowledge(
                [(recipient: b, messages: [(a, 1)]), (recipient: c, messages: [(a, 1), (b, 2), (b, 77)])],
                now: now
            )
            #expect(
                acknowledged.map { "\($0.recipient):\($0.sender):\($0.messageID)" } == [
                    "\(b):\(a):1", "\(c):\(a):1", "\(c):\(b):2",
                ])
            #expect(try store.pendingMessageCount(for: b) == 0)
            #expect(try store.pendingMessageCount(for: c) == 0)
            #expect(try rowCount(path, "message") == 0)
        }
    }

    @Test func prunesTombstonesAfterTheWindow() throws {
        try withTemporaryStore(configuration: .init(deduplicationWindow: .seconds(3600))) { store, path in
            let ids = try store.register(person("a"), person("b"))
            let (a, b) = (ids[0], ids[1])
            _ = try store.storeMessages([message(1, from: a, to: [b]), message(2, from: a, to: [b])], now: now)
            _ = try store.acknowledge(recipient: b, messages: [(a, 1)], now: now)

            #expect(try store.pruneAcknowledged(now: now.addingTimeInterval(3599)) == 0)
            #expect(try store.storeMessages([message(1, from: a, to: [b])], now: now)[0][0].duplicate)
            #expect(try store.pruneAcknowledged(now: now.addingTimeInterval(3601)) == 1)
            // Pending deliveries are never pruned.
            #expect(try rowCount(path, "delivery") == 1)
            #expect(try store.pendingMessageCount(for: b) == 1)

            // Past the window a resend is a new message, with a new, higher sequence.
            let resent = try store.storeMessages([message(1, from: a, to: [b])], now: now)
            #expect(resent[0][0].duplicate == false)
            #expect(try store.pendingMessages(for: b, after: 0, limit: 10).map(\.messageID) == [2, 1])
        }
    }

    @Test func concurrentBatchesGetDistinctSequences() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("a"), person("b"))
            let sequences = Mutex<[Int64]>([])
            DispatchQueue.concurrentPerform(iterations: 8) { worker in
                do {
                    let batch = (0..<25).map {
                        self.message(MessageID(UInt64(worker * 100 + $0)), from: ids[0], to: [ids[1]])
                    }
                    let stored = try store.storeMessages(batch, now: now).flatMap { $0.map(\.sequence) }
                    #expect(stored == stored.sorted())
                    sequences.withLock { $0 += stored }
                } catch {
                    Issue.record(error)
                }
            }
            let all = sequences.withLock { $0 }
            #expect(Set(all).count == 200)
            #expect(try store.pendingMessageCount(for: ids[1]) == 200)
            let pending = try store.pendingMessages(for: ids[1], after: 0, limit: 1000).map(\.sequence)
            #expect(pending == all.sorted())
        }
    }
}
