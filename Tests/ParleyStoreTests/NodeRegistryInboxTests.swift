import Foundation
import ParleyCore
import ParleyNodeStore
import ParleyTesting
import Testing

@Suite struct NodeRegistryInboxTests {
    private func message(_ id: MessageID, _ text: String, recipients: [UserID] = [2002]) -> Message {
        Message(
            id: id,
            sender: 2001,
            recipients: recipients,
            body: .text(text),
            sentAt: Date(timeIntervalSince1970: 1_700_000_000.5),
            deliveredAt: Date(timeIntervalSince1970: 1_700_000_001.25)
        )
    }

    @Test func aReceivedMessageIsSeenAndKeptUntilRemovedAlsoAcrossReopening() throws {
        try withRegistryDirectory { directory in
            let registry = try NodeRegistry(dataDirectory: directory)
            let first = try #require(
                try registry.receive(
                    message(7, "one"), sender: .user(2001), fromNode: .named("n1"), route: "direct", at: Date()))
            // a copy (any route) is a duplicate: nothing is written
            #expect(
                try registry.receive(message(7, "one"), sender: .user(2001), fromNode: nil, route: "server", at: Date())
                    == nil)
            #expect(try registry.hasSeen(sender: .user(2001), messageID: 7))
            let binary = Message(
                id: 8, sender: 2001, recipients: [], body: .binary([]), sentAt: Date(timeIntervalSince1970: 5),
                deliveredAt: Date(timeIntervalSince1970: 6))
            let second = try #require(
                try registry.receive(binary, sender: .user(2001), fromNode: nil, route: "server", at: Date()))
            #expect(second > first)

            let reopened = try NodeRegistry(dataDirectory: directory)
            let entries = try reopened.inbox()
            #expect(entries.map(\.sequence) == [first, second])
            #expect(entries.map(\.message) == [message(7, "one"), binary])
            #expect(entries.map(\.fromNode) == [.named("n1"), nil])
            #expect(entries.map(\.route) == ["direct", "server"])
            #expect(entries.map(\.sender) == [MessageOrigin.user(2001), .user(2001)])

            #expect(try reopened.removeFromInbox(sequence: first))
            #expect(try !reopened.removeFromInbox(sequence: first))
            #expect(try reopened.inbox().map(\.sequence) == [second])
            // still seen once it has left the inbox: a later copy is a duplicate
            #expect(
                try reopened.receive(message(7, "one"), sender: .user(2001), fromNode: nil, route: "server", at: Date())
                    == nil)
            #expect(try reopened.inbox(limit: 0).isEmpty)
        }
    }

    @Test func originsAreStoredAsKeysAndOnlyThoseAreRead() {
        for origin in [MessageOrigin.user(1000), .user(UserID(UInt32.max)), .node(.named("abc234"))] {
            #expect(MessageOrigin(key: origin.key) == origin)
        }
        for damaged in ["", "user:", "user:x", "user:99999999999", "node:", "nodes:a", "1000"] {
            #expect(MessageOrigin(key: damaged) == nil, "\(damaged)")
        }
    }
}
