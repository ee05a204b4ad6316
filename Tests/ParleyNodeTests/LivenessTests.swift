import Foundation
import ParleyCore
import ParleyDiscovery
import ParleyNode
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct LivenessTests {
    /// A hung peer (no FIN, no RST, its mDNS record still there) is shown down once its link has
    /// been silent for the peer timeout and a redial failed.
    @Test func aFrozenPeerIsShownDownAfterThePeerTimeout() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let proxy = try await FreezingProxy()
        let ann = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: directory.subdirectory("ann"), name: "ann"),
            discovery: FakeDiscovery(lan: lan),
            logger: makeTestLogger("ann")
        )
        // Bob is reachable only through the proxy, and sees nobody himself.
        let bob = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: directory.subdirectory("bob"), name: "bob"),
            discovery: nil,
            logger: makeTestLogger("bob")
        )
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(bob) { bobEvents in
                proxy.forward(to: try await bob.listeningPort)
                let announcer = FakeDiscovery(lan: lan, lingers: true, advertisedPort: UInt16(proxy.port))
                try await announcer.advertise(
                    ServiceRecord(instanceName: "bob", port: 1, nodeID: bob.nodeID, userName: "bob")
                )
                try await annEvents.wait("bob on the LAN") { $0.hasPeerUp(bob.nodeID) }
                let sent = try await ann.send(.text("through the proxy"), to: .node(bob.nodeID))
                #expect(sent.route == .direct)
                try await bobEvents.wait("the message") { _ in bobEvents.messages.count == 1 }
                try await annEvents.wait("a link to bob") { $0.isLinked(to: bob.nodeID) }

                try await proxy.freeze()
                let frozenAt = ContinuousClock.now
                // peerTimeout is 1 s in these tests: down after the idle timeout plus a failed redial.
                try await annEvents.wait("bob to go down", timeout: .seconds(4)) { $0.contains(.peerDown(bob.nodeID)) }
                let took = frozenAt.duration(to: .now)
                #expect(took >= .milliseconds(500))
                #expect(took < .seconds(3))
                #expect(ann.peers().first { $0.nodeID == bob.nodeID }?.online == false)
                // Still advertised, still offline: a message waits in the outbox.
                let later = try await ann.send(.text("later"), to: .node(bob.nodeID))
                #expect(later.route == .queued)
            }
        }
    }
}
