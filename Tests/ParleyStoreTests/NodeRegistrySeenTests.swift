import Foundation
import ParleyCore
import ParleyNodeStore
import ParleyTesting
import Testing

@Suite struct NodeRegistrySeenTests {
    @Test func aSeenMessageIsRecordedOnceAndSurvivesReopening() throws {
        try withRegistryDirectory { directory in
            let registry = try NodeRegistry(dataDirectory: directory)
            #expect(try !registry.hasSeen(sender: .user(1000), messageID: 7))
            #expect(try registry.recordSeen(sender: .user(1000), messageID: 7, at: Date()))
            #expect(try !registry.recordSeen(sender: .user(1000), messageID: 7, at: Date()))
            // Message IDs are unique per sender only.
            #expect(try !registry.hasSeen(sender: .user(1001), messageID: 7))
            let reopened = try NodeRegistry(dataDirectory: directory)
            #expect(try reopened.hasSeen(sender: .user(1000), messageID: 7))
            #expect(try reopened.pruneSeen(before: Date().addingTimeInterval(60)) == 1)
            #expect(try !reopened.hasSeen(sender: .user(1000), messageID: 7))
        }
    }

    @Test func theNodeOutboxKeepsOrderAndIsIdempotent() throws {
        try withRegistryDirectory { directory in
            let registry = try NodeRegistry(dataDirectory: directory)
            let created = Date(timeIntervalSince1970: 1_700_000_000)
            #expect(
                try registry.enqueue(
                    forNode: .named("b"), messageID: 1, sender: 0, isText: true, body: Array("one".utf8),
                    createdAt: created)
                    == .enqueued
            )
            #expect(
                try registry.enqueue(
                    forNode: .named("c"), messageID: 2, sender: 0, isText: false, body: [], createdAt: created)
                    == .enqueued
            )
            #expect(
                try registry.enqueue(
                    forNode: .named("b"), messageID: 3, sender: 0, isText: false, body: [9], createdAt: created)
                    == .enqueued
            )
            #expect(
                try registry.enqueue(
                    forNode: .named("b"), messageID: 1, sender: 0, isText: true, body: Array("one".utf8),
                    createdAt: created)
                    == .duplicate
            )
            let reopened = try NodeRegistry(dataDirectory: directory)
            let forB = try reopened.pendingForNode(.named("b"))
            #expect(forB.map(\.messageID) == [1, 3])
            #expect(forB.first?.body == Array("one".utf8))
            #expect(forB.first?.isText == true)
            #expect(forB.first?.createdAt == created)
            #expect(try reopened.pendingForNode(nil).map(\.messageID) == [1, 2, 3])
            #expect(try reopened.pendingForNode(.named("c")).first?.body == [])
            #expect(try reopened.markDeliveredToNode(sequence: forB[0].sequence))
            #expect(try !reopened.markDeliveredToNode(sequence: forB[0].sequence))
            #expect(try reopened.pendingForNode(.named("b")).map(\.messageID) == [3])
        }
    }
}
