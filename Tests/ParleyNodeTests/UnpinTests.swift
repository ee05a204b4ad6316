import Foundation
import ParleyCore
import ParleyDiscovery
import ParleyNode
import ParleyNodeStore
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct UnpinTests {
    /// A user whose key is pinned comes back on a new node: refused with an error that names the
    /// real command and says what may have happened; once unpinned (through the API, or the
    /// command from another process), the new node is accepted and pinned.
    @Test func aUserOnANewNodeIsAcceptedOnceUnpinned() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let annDirectory = directory.subdirectory("ann")
        // Ann met user 42 on another node before.
        let oldNode = try ParleyNode.nodeID(dataDirectory: directory.subdirectory("old"))
        try NodeRegistry(dataDirectory: annDirectory).checkKey(
            forUser: 42, nodeID: oldNode, publicKey: [1, 2, 3], vouchedByServer: false, now: Date())
        let ann = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: annDirectory, name: "ann"),
            discovery: FakeDiscovery(lan: lan), logger: makeTestLogger("ann"))
        var movedConfiguration = makeNodeConfiguration(dataDirectory: directory.subdirectory("new"), name: "user42")
        movedConfiguration.credentials = .init(userID: 42, password: "")
        let moved = try ParleyNode(
            configuration: movedConfiguration, discovery: FakeDiscovery(lan: lan), logger: makeTestLogger("new"))
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(moved) { movedEvents in
                try await movedEvents.wait("ann on the LAN") { $0.hasPeerUp(ann.nodeID) }
                _ = try await moved.send(.text("it is me, on a new node"), to: .node(ann.nodeID))
                try await annEvents.wait("ann's refusal") { events in
                    events.contains { event in
                        if case .linkRefused(moved.nodeID, let error, byPeer: false) = event {
                            return error.code == .pinnedKeyMismatch
                        }
                        return false
                    }
                }
                let refusal = annEvents.all.compactMap { event -> ParleyError? in
                    if case .linkRefused(_, let error, byPeer: false) = event { return error }
                    return nil
                }.first
                let message = refusal?.message ?? ""
                #expect(message.hasPrefix("user 42's key changed: node \(moved.nodeID)"), "\(message)")
                #expect(message.contains("run `parley unpin --data \(annDirectory) user 42`"), "\(message)")
                #expect(message.contains("another node claims user 42"), "\(message)")

                // The refusing side does not dial the refused node for a while either.
                let direct = try await ann.send(.text("hello?"), to: .node(moved.nodeID))
                #expect(direct.route == .queued)

                #expect(try await ann.unpin(.user(42)))
                // Nothing pinned: false. (Not user 42 again: the moved node may redial at once
                // and be pinned anew, which is what unpinning is for.)
                #expect(try !ParleyNode.unpin(.user(43), dataDirectory: annDirectory))
                // Ann dials at once now: her queued message leaves, and she is linked.
                let after = try await ann.send(.text("welcome back"), to: .node(moved.nodeID))
                #expect(after.route == .direct)
                try await movedEvents.wait("ann's messages") { _ in movedEvents.messages.count == 2 }
                #expect(movedEvents.messages.map(\.body) == [.text("hello?"), .text("welcome back")])
                #expect(
                    try NodeRegistry(dataDirectory: annDirectory).pinnedKey(forUser: 42)?.nodeID
                        == moved.nodeID)
            }
        }
    }
}
