import Foundation
import ParleyCore
import ParleyNodeStore
import ParleyTesting
import Testing

/// Messages sent through the server, kept until their delivery receipts (for order across routes).
@Suite struct AwaitingReceiptTests {
    @Test func keptInSendOrderPerRecipientUntilConfirmed() throws {
        try withTemporaryRegistry { (registry, _) throws in
            for (id, recipient) in [(MessageID(30), UserID(1042)), (10, 1043), (20, 1042)] {
                try registry.awaitReceipt(
                    recipient: recipient, messageID: id, sender: 1000, isText: true, body: Array("m\(id)".utf8),
                    createdAt: now)
            }
            // again: idempotent by (recipient, message ID)
            try registry.awaitReceipt(
                recipient: 1042, messageID: 30, sender: 1000, isText: true, body: Array("changed".utf8),
                createdAt: now)
            let waiting = try registry.awaitingReceipts(for: 1042)
            #expect(waiting.map(\.messageID) == [30, 20])
            #expect(waiting.map(\.body) == [Array("m30".utf8), Array("m20".utf8)])
            #expect(waiting.allSatisfy { $0.recipient == 1042 && $0.sender == 1000 && $0.isText })

            #expect(try registry.confirmReceipt(recipient: 1042, messageID: 30))
            #expect(try !registry.confirmReceipt(recipient: 1042, messageID: 30))
            #expect(try !registry.confirmReceipt(recipient: 1043, messageID: 20))  // another recipient's ID
            #expect(try registry.awaitingReceipts(for: 1042).map(\.messageID) == [20])
            #expect(try registry.awaitingReceipts(for: 1043).map(\.messageID) == [10])
        }
    }

    @Test func anEmptyBinaryBodyAndPruning() throws {
        try withTemporaryRegistry { (registry, _) throws in
            try registry.awaitReceipt(
                recipient: 7, messageID: 1, sender: 1000, isText: false, body: [],
                createdAt: now.addingTimeInterval(-90))
            try registry.awaitReceipt(
                recipient: 7, messageID: 2, sender: 1000, isText: false, body: [0, 255], createdAt: now)
            let waiting = try registry.awaitingReceipts(for: 7)
            #expect(waiting.map(\.body) == [[], [0, 255]])
            #expect(waiting.allSatisfy { !$0.isText })
            #expect(try registry.pruneAwaitingReceipts(before: now.addingTimeInterval(-60)) == 1)
            #expect(try registry.awaitingReceipts(for: 7).map(\.messageID) == [2])
            #expect(try registry.awaitingReceipts(for: 7, limit: 0).isEmpty)
        }
    }

    @Test func outboxRecipientsInTheOrderOfTheirOldestMessage() throws {
        try withTemporaryRegistry { (registry, _) throws in
            for (id, recipients) in [(MessageID(1), [UserID(1043)]), (2, [1042, 1043]), (3, [1044])] {
                try registry.enqueue(
                    OutboxMessage(
                        messageID: id, sender: 1000, recipients: recipients, isText: true, body: [1], createdAt: now))
            }
            try registry.enqueue(
                forNode: .named("node-b"), messageID: 4, sender: 1000, isText: true, body: [1], createdAt: now)
            try registry.enqueue(
                forNode: .named("node-a"), messageID: 5, sender: 1000, isText: true, body: [1], createdAt: now)
            let waiting = try registry.outboxRecipients()
            #expect(waiting.users == [1043, 1042, 1044])
            #expect(waiting.nodes == [.named("node-b"), .named("node-a")])
        }
    }
}
