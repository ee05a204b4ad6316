import Foundation
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyTesting
import Testing

/// Exactly once to the application: a message the node acknowledged is handed to the application
/// until it asks for the next event, also across a restart, and never twice.
@Suite(.timeLimit(.minutes(1))) struct ExactlyOnceTests {
    @Test func aDirectMessageTakenButNotConfirmedComesAgainAfterARestartAndOnlyOnce() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let ann = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: directory.subdirectory("ann"), name: "ann"),
            discovery: FakeDiscovery(lan: lan),
            logger: makeTestLogger("ann")
        )
        let bobConfiguration = makeNodeConfiguration(dataDirectory: directory.subdirectory("bob"), name: "bob")
        func bob() throws -> ParleyNode {
            try ParleyNode(
                configuration: bobConfiguration, discovery: FakeDiscovery(lan: lan), logger: makeTestLogger("bob"))
        }
        try await withRunningNode(ann) { annEvents in
            let first = try bob()
            let (sent, taken) = try await takeOneMessageThenStop(first) {
                try await annEvents.wait("bob to show up") { $0.hasPeerUp(first.nodeID) }
                return try await ann.send(.text("exactly once"), to: .node(first.nodeID))
            }
            #expect(sent.route == .direct)
            #expect(taken.id == sent.messageID)

            // The application took it but never asked for the next event (it crashed): the next
            // run hands it over again, and a copy from the sender is not delivered a second time.
            let second = try bob()
            try await withRunningNode(second) { bobEvents in
                try await bobEvents.wait("the message again") { _ in bobEvents.messages.count == 1 }
                #expect(bobEvents.receivedRoutes == [.direct])
                try await annEvents.wait("bob to show up again") { _ in
                    ann.peers().contains { $0.nodeID == second.nodeID && $0.online }
                }
                let again = try await ann.send(.text("exactly once"), to: .node(second.nodeID), id: sent.messageID)
                #expect(again.route == .direct)
                let after = try await ann.send(.text("after"), to: .node(second.nodeID))
                try await bobEvents.wait("the next message") { _ in bobEvents.messages.count >= 2 }
                #expect(bobEvents.messages.map(\.id) == [sent.messageID, after.messageID])
                #expect(bobEvents.messages.first?.body == taken.body)
            }
            // Both were confirmed (the application asked for more): nothing comes again.
            let third = try bob()
            #expect(await replayedMessages(third).isEmpty)
        }
    }

    @Test func aMessageFromTheServerTakenButNotConfirmedComesAgainAfterARestartAndOnlyOnce() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, server in
            let users = try await registerUsers(["ann", "bob"], on: server)
            let ann = try makeServerNode(
                "ann", users[0], directory: directory, server: server, allowsDirectLinks: false)
            func bob() throws -> ParleyNode {
                try makeServerNode("bob", users[1], directory: directory, server: server, allowsDirectLinks: false)
            }
            try await withRunningNode(ann) { annEvents in
                try await annEvents.waitForLogon()
                let (sent, taken) = try await takeOneMessageThenStop(try bob()) {
                    try await ann.send(.text("through the server"), to: .user(users[1]))
                }
                #expect(sent.route == .server)
                #expect(taken.id == sent.messageID)
                let second = try bob()
                try await withRunningNode(second) { bobEvents in
                    try await bobEvents.waitForLogon()
                    let after = try await ann.send(.text("after"), to: .user(users[1]))
                    try await bobEvents.wait("the next message") { _ in bobEvents.messages.count >= 2 }
                    #expect(bobEvents.messages.map(\.id) == [sent.messageID, after.messageID])
                    #expect(bobEvents.receivedRoutes == [.server, .server])
                }
                let third = try bob()
                #expect(await replayedMessages(third).isEmpty)
            }
        }
    }
}

/// Runs `node`, calls `trigger` (which makes a message arrive), takes events until the message,
/// and stops the node without asking for another event: as if the application crashed with the
/// message in hand.
private func takeOneMessageThenStop(
    _ node: ParleyNode,
    isolation: isolated (any Actor)? = #isolation,
    _ trigger: () async throws -> ParleyNode.SendResult
) async throws -> (ParleyNode.SendResult, Message) {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await node.run() }
        do {
            _ = try await node.listeningPort
            let sent = try await trigger()
            var events = node.events.makeAsyncIterator()
            var taken: Message?
            while taken == nil, let event = await events.next() {
                if case .messageReceived(let message, _, _) = event { taken = message }
            }
            await node.shutdown()
            try await group.waitForAll()
            return (sent, try #require(taken))
        } catch {
            await node.shutdown()
            try? await group.waitForAll()
            throw error
        }
    }
}

/// The messages a node on a data directory hands over before it runs (what the last run left
/// unconfirmed).
private func replayedMessages(_ node: ParleyNode) async -> [Message] {
    await node.shutdown()
    var messages: [Message] = []
    for await event in node.events {
        if case .messageReceived(let message, _, _) = event { messages.append(message) }
    }
    return messages
}
