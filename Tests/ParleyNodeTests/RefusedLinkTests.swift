import Foundation
import ParleyCore
import ParleyLink
import ParleyNode
import ParleyStore
import Testing

@Suite(.timeLimit(.minutes(1))) struct RefusedLinkTests {
    /// A node whose NODE_HELLO the other side refuses (here: it claims a user whose key the other
    /// side pinned) should not dial again at once, over and over: every attempt costs both sides a
    /// TLS handshake.
    @Test func aRefusedNodeDoesNotRedialInATightLoop() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let annDirectory = directory.subdirectory("ann")
        // Ann's node has pinned the real user 42's key.
        let real = try NodeIdentity(dataDirectory: directory.subdirectory("real"))
        try NodeRegistry(dataDirectory: annDirectory).checkKey(
            forUser: 42,
            nodeID: real.nodeID.description,
            publicKey: real.publicKeyDER,
            vouchedByServer: false,
            now: Date()
        )
        let ann = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: annDirectory, name: "ann"),
            discovery: FakeDiscovery(lan: lan),
            logger: makeTestLogger("ann")
        )
        var impostorConfiguration = makeNodeConfiguration(
            dataDirectory: directory.subdirectory("mallory"), name: "mallory")
        impostorConfiguration.credentials = .init(userID: 42, password: "")
        let mallory = try ParleyNode(
            configuration: impostorConfiguration,
            discovery: FakeDiscovery(lan: lan),
            logger: makeTestLogger("mallory")
        )
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(mallory) { malloryEvents in
                try await malloryEvents.wait("ann to show up") { events in
                    events.contains { if case .peerUp = $0 { true } else { false } }
                }
                let result = try await mallory.send(.text("I am 42"), to: .node(ann.nodeID))
                #expect(result.route == .queued)

                // Watch for two seconds (the absence of a storm cannot be awaited as an event):
                // how often does mallory's node count a link to ann as up?
                func linkUps() -> Int {
                    malloryEvents.all.count { event in
                        switch event {
                        case .peerUp(let info), .peerChanged(let info): info.nodeID == ann.nodeID && info.linked
                        default: false
                        }
                    }
                }
                let start = ContinuousClock.now
                let before = linkUps()
                while ContinuousClock.now < start + .seconds(2), linkUps() - before <= 20 {
                    try await Task.sleep(for: .milliseconds(20))
                }
                let ups = linkUps() - before
                print("mallory counted a link to ann as up \(ups) times in \(start.duration(to: .now))")
                // refused once, then it waits (5 s, doubling) before dialling again
                #expect(ups <= 1, "mallory's node linked to ann \(ups) times in \(start.duration(to: .now))")
                #expect(annEvents.messages.isEmpty)
                #expect(!annEvents.all.isLinked(to: mallory.nodeID))
            }
        }
    }
}
