import Foundation
import ParleyCore
import ParleyNode
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct OutboxExpiryTests {
    /// A message to a user nobody can reach does not wait forever: it expires, with an event.
    @Test func aQueuedMessageExpiresWithAnEvent() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = makeNodeConfiguration(dataDirectory: directory.subdirectory("ann"), name: "ann")
        configuration.outboxExpiry = .milliseconds(300)
        let ann = try ParleyNode(configuration: configuration, discovery: nil, logger: makeTestLogger("ann"))
        try await withRunningNode(ann) { annEvents in
            let sent = try await ann.send(.text("to nobody"), to: .user(4242))
            #expect(sent.route == .queued)
            try await annEvents.wait("the expiry") {
                $0.contains(.queuedMessageExpired(sent.messageID, to: .user(4242)))
            }
            #expect(try await ann.queuedMessages().isEmpty)
        }
    }

    /// The outbox can be listed and emptied message by message, by the node and from outside it.
    @Test func queuedMessagesAreListedAndCancelled() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let annDirectory = directory.subdirectory("ann")
        let ghost = try ParleyNode.nodeID(dataDirectory: directory.subdirectory("ghost"))
        let ann = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: annDirectory, name: "ann"), discovery: nil,
            logger: makeTestLogger("ann"))
        try await withRunningNode(ann) { _ in
            let toUser = try await ann.send(.text("to a user"), to: .user(4242))
            let toNode = try await ann.send(.binary([1, 2]), to: .node(ghost))
            #expect([toUser.route, toNode.route] == [.queued, .queued])

            let queued = try await ann.queuedMessages()
            #expect(queued.map(\.messageID) == [toUser.messageID, toNode.messageID])
            #expect(queued.map(\.recipient) == [.user(4242), .node(ghost)])
            #expect(queued.map(\.body) == [.text("to a user"), .binary([1, 2])])
            let first = try #require(queued.first)
            #expect(abs(first.expiresAt.timeIntervalSince(first.createdAt) - 7 * 86_400) < 1)

            #expect(try await ann.cancelQueued(toUser.messageID))
            #expect(try await !ann.cancelQueued(toUser.messageID))
            // From outside the node (another process would do the same), while it runs.
            #expect(try ParleyNode.queuedMessages(dataDirectory: annDirectory).map(\.messageID) == [toNode.messageID])
            #expect(try ParleyNode.cancelQueued(toNode.messageID, dataDirectory: annDirectory))
            #expect(try await ann.queuedMessages().isEmpty)
        }
        #expect(throws: ParleyError.self) {
            try ParleyNode.queuedMessages(dataDirectory: directory.subdirectory("none"))
        }
    }
}
