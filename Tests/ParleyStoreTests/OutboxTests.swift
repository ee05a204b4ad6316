import Foundation
import ParleyCore
import ParleyNodeStore
import Synchronization
import Testing

@Suite struct OutboxTests {
    func message(
        _ id: MessageID,
        from sender: UserID = 1000,
        to recipients: [UserID],
        _ text: String = "hello",
        at createdAt: Date = now
    ) -> OutboxMessage {
        OutboxMessage(
            messageID: id,
            sender: sender,
            recipients: recipients,
            isText: true,
            body: Array(text.utf8),
            createdAt: createdAt
        )
    }

    @Test func enqueueIsIdempotentBySenderAndMessageID() throws {
        try withTemporaryRegistry { (registry, _) throws in
            #expect(try registry.enqueue(message(1, to: [1042])) == .enqueued)
            #expect(try registry.enqueue(message(1, to: [1042], "changed")) == .duplicate)
            // The same message ID from another sender is another message.
            #expect(try registry.enqueue(message(1, from: 1001, to: [1042])) == .enqueued)
            #expect(try registry.pendingCount() == 2)
            let pending = try registry.pending(for: 1042)
            #expect(pending.map(\.message.body) == [Array("hello".utf8), Array("hello".utf8)])
            #expect(pending.map(\.message.sender) == [1000, 1001])
        }
    }

    @Test func pendingKeepsTheEnqueueOrderPerRecipient() throws {
        try withTemporaryRegistry { (registry, _) throws in
            try registry.enqueue(message(30, to: [1042], "first"))
            try registry.enqueue(message(10, to: [1043], "second"))
            try registry.enqueue(message(20, to: [1042, 1043], "third"))
            try registry.enqueue(message(5, to: [1042], "fourth"))
            #expect(try registry.pending(for: 1042).map(\.message.messageID) == [30, 20, 5])
            #expect(try registry.pending(for: 1043).map(\.message.messageID) == [10, 20])
            #expect(try registry.pending(for: 1044) == [])
            let all = try registry.pending(for: nil)
            #expect(all.map(\.message.messageID) == [30, 10, 20, 5])
            #expect(all.map(\.sequence) == all.map(\.sequence).sorted())
            // Paging.
            let firstPage = try registry.pending(for: 1042, limit: 2)
            #expect(firstPage.map(\.message.messageID) == [30, 20])
            let secondPage = try registry.pending(for: 1042, after: firstPage[1].sequence, limit: 2)
            #expect(secondPage.map(\.message.messageID) == [5])
            #expect(try registry.pending(for: nil, limit: 0) == [])
        }
    }

    @Test func deliveryIsPerRecipient() throws {
        try withTemporaryRegistry { (registry, _) throws in
            let group = message(7, to: [1042, 1043, 1044, 1043], "to three", at: now)
            try registry.enqueue(group)
            let entry = try #require(try registry.pending(for: nil).first)
            #expect(entry.message == group)
            #expect(entry.pendingRecipients == [1042, 1043, 1044])
            #expect(try registry.pendingCount(for: 1043) == 1)

            #expect(try registry.markDelivered(messageID: 7, sender: 1000, recipient: 1043, route: "server", at: now))
            // Delivered twice, or to someone it is not for: nothing to do.
            #expect(
                try registry.markDelivered(messageID: 7, sender: 1000, recipient: 1043, route: "server", at: now)
                    == false)
            #expect(
                try registry.markDelivered(messageID: 7, sender: 1000, recipient: 9999, route: "server", at: now)
                    == false)
            #expect(
                try registry.markDelivered(messageID: 8, sender: 1000, recipient: 1042, route: "server", at: now)
                    == false)
            #expect(try registry.pending(for: 1043) == [])
            #expect(try registry.pending(for: 1042).first?.pendingRecipients == [1042, 1044])
            #expect(try registry.pending(for: 1042).first?.message.recipients == [1042, 1043, 1044, 1043])
            #expect(try registry.pendingCount() == 1)

            try registry.markDelivered(messageID: 7, sender: 1000, recipient: 1042, route: "direct:node-a", at: now)
            try registry.markDelivered(messageID: 7, sender: 1000, recipient: 1044, route: "direct:node-c", at: now)
            #expect(try registry.pendingCount() == 0)
            #expect(try registry.pending(for: nil) == [])

            // Delivered messages are still recognized, until pruned.
            #expect(try registry.enqueue(group) == .duplicate)
            #expect(try registry.pruneDelivered(before: now) == 0)
            #expect(try registry.pruneDelivered(before: now.addingTimeInterval(1)) == 3)
            #expect(try registry.enqueue(group) == .enqueued)
        }
    }

    @Test func concurrentEnqueuesOfOneMessageStoreItOnce() throws {
        try withTemporaryRegistry { (registry, _) throws in
            let enqueued = Mutex(0)
            let failures = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: 8) { _ in
                do {
                    if try registry.enqueue(message(1, to: [1042])) == .enqueued {
                        enqueued.withLock { $0 += 1 }
                    }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
            #expect(failures.withLock { $0 } == [])
            #expect(enqueued.withLock { $0 } == 1)
            #expect(try registry.pendingCount(for: 1042) == 1)
        }
    }

    @Test func aPartlyDeliveredMessageIsStillADuplicate() throws {
        try withTemporaryRegistry { (registry, _) throws in
            try registry.enqueue(message(7, to: [1042, 1043]))
            try registry.markDelivered(messageID: 7, sender: 1000, recipient: 1042, route: "server", at: now)
            #expect(try registry.enqueue(message(7, to: [1042, 1043])) == .duplicate)
            #expect(try registry.pending(for: 1042) == [])
            #expect(try registry.pending(for: 1043).count == 1)
        }
    }

    @Test func emptyAndBinaryBodiesRoundTrip() throws {
        try withTemporaryRegistry { (registry, _) throws in
            try registry.enqueue(message(1, to: [1042], ""))
            let binary = OutboxMessage(
                messageID: MessageID(UInt64.max),
                sender: 1000,
                recipients: [UserID(UInt32.max)],
                isText: false,
                body: [0, 255, 0],
                createdAt: now
            )
            try registry.enqueue(binary)
            let pending = try registry.pending(for: nil)
            #expect(pending[0].message.body == [])
            #expect(pending[1].message == binary)
        }
    }

    @Test func aMessageNeedsARecipient() throws {
        try withTemporaryRegistry { (registry, _) throws in
            let error = #expect(throws: ParleyError.self) { try registry.enqueue(message(1, to: [])) }
            #expect(error?.code == .invalidRequest)
        }
    }

    @Test func theOutboxSurvivesARestart() throws {
        try withRegistryDirectory { (directory) throws in
            do {
                let registry = try NodeRegistry(dataDirectory: directory)
                try registry.enqueue(message(1, to: [1042, 1043], "one"))
                try registry.enqueue(message(2, to: [1042], "two"))
                try registry.markDelivered(messageID: 1, sender: 1000, recipient: 1043, route: "server", at: now)
            }
            let restarted = try NodeRegistry(dataDirectory: directory)
            #expect(try restarted.pendingCount() == 2)
            let pending = try restarted.pending(for: 1042)
            #expect(pending.map(\.message.body) == [Array("one".utf8), Array("two".utf8)])
            #expect(pending[0].pendingRecipients == [1042])
            #expect(pending[0].message.createdAt == now.roundedToMilliseconds)
            #expect(try restarted.enqueue(message(1, to: [1042, 1043])) == .duplicate)
            // New entries come after the old ones.
            try restarted.enqueue(message(3, to: [1042], "three"))
            #expect(try restarted.pending(for: 1042).map(\.message.messageID) == [1, 2, 3])
        }
    }
}
