import Foundation
import ParleyCore
import ParleyNode
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct NodeHistoryTests {
    /// Two nodes on the LAN, no server: each keeps its own history of what it sent and received,
    /// with the route, searchable with the same query as the server's; a message queued for a
    /// user no route reaches is in the history as queued and undelivered.
    @Test func peerToPeerHistory() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        func userNode(_ name: String, _ user: UserID) throws -> ParleyNode {
            var configuration = makeNodeConfiguration(dataDirectory: directory.subdirectory(name), name: name)
            configuration.credentials = .init(userID: user, password: "unused")
            return try ParleyNode(
                configuration: configuration, discovery: FakeDiscovery(lan: lan), logger: makeTestLogger(name))
        }
        let ann = try userNode("ann", 2001)
        let bob = try userNode("bob", 2002)
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(bob) { bobEvents in
                try await annEvents.wait("bob on the LAN, linked") { $0.isLinked(to: bob.nodeID) }
                let first = try await ann.send(.text("Lunch at the Café?"), to: .user(2002))
                let second = try await ann.send(.binary([7, 7]), to: .user(2002))
                #expect(first.route == .direct && second.route == .direct)
                try await bobEvents.wait("ann's messages") { _ in bobEvents.messages.count == 2 }
                let reply = try await bob.send(.text("yes, cafe at noon"), to: .user(2001))
                #expect(reply.route == .direct)
                try await annEvents.wait("bob's reply") { _ in annEvents.messages.count == 1 }
                let queued = try await ann.send(.text("for carol, later"), to: .user(2003))
                #expect(queued.route == .queued)

                let annAll = try await ann.searchHistory(HistoryQuery())
                #expect(annAll.entries.map(\.messageID) == [queued, reply, second, first].map(\.messageID))
                #expect(annAll.entries.map(\.route) == [.queued, .direct, .direct, .direct])
                #expect(annAll.entries.map { $0.deliveredAt != nil } == [false, true, true, true])
                #expect(annAll.entries.map(\.sender) == [2001, 2002, 2001, 2001])
                let cafe = try await ann.searchHistory(HistoryQuery(text: .init(.contains, "CAFE")))
                #expect(cafe.entries.map(\.messageID) == [reply.messageID, first.messageID])
                let withBob = try await ann.searchHistory(HistoryQuery(conversationWith: [2002], order: .oldestFirst))
                #expect(withBob.entries.map(\.messageID) == [first, second, reply].map(\.messageID))
                #expect(try await ann.searchHistory(HistoryQuery(delivery: .undelivered)).entries.count == 1)

                let bobAll = try await bob.searchHistory(HistoryQuery(order: .oldestFirst))
                #expect(bobAll.entries.map(\.messageID) == [first, second, reply].map(\.messageID))
                #expect(bobAll.entries.map(\.recipient) == [2002, 2002, 2001])
                #expect(bobAll.entries.first?.text == "Lunch at the Café?")
                #expect(bobAll.entries.dropFirst().first?.body == [7, 7])
                // The same history from the data directory, while the node runs.
                let fromDisk = try ParleyNode.searchHistory(
                    dataDirectory: directory.subdirectory("bob"), HistoryQuery(kinds: [.binary]))
                #expect(fromDisk.entries.map(\.messageID) == [second.messageID])
            }
        }
    }
}
