import Foundation
import ParleyClient
import ParleyCore
import ParleyDiscovery
import ParleyNode
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct DirectFallbackTests {
    /// The direct link hangs (no answer, no FIN, no RST) while the server still works: the message
    /// that was in flight on the link goes through the server instead, and arrives once.
    @Test func aFailingDirectSendFallsBackToTheServer() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let proxy = try await FreezingProxy()
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, server in
            let users = try await registerUsers(["ann", "bob"], on: server)
            let ann = try makeServerNode("ann", users[0], directory: directory, server: server, lan: lan)
            // Bob sees nobody on the LAN; ann finds him through the proxy first.
            let bob = try makeServerNode("bob", users[1], directory: directory, server: server)
            try await withRunningNode(ann) { annEvents in
                try await withRunningNode(bob) { bobEvents in
                    try await annEvents.waitForLogon()
                    try await bobEvents.waitForLogon()
                    proxy.forward(to: try await bob.listeningPort)
                    let announcer = FakeDiscovery(lan: lan, lingers: true, advertisedPort: UInt16(proxy.port))
                    try await announcer.advertise(
                        ServiceRecord(
                            instanceName: "bob", port: 1, nodeID: bob.nodeID, userID: users[1].rawValue,
                            userName: "bob")
                    )
                    try await annEvents.wait("bob on the LAN") { $0.hasPeerUp(bob.nodeID) }

                    let first = try await ann.send(.text("first, directly"), to: .user(users[1]))
                    #expect(first.route == .direct)
                    try await bobEvents.wait("the first message") { _ in bobEvents.messages.count == 1 }
                    try await annEvents.wait("a link to bob") { $0.isLinked(to: bob.nodeID) }

                    // The link through the proxy stops carrying anything, both ways.
                    try await proxy.freeze()
                    let started = ContinuousClock.now
                    let second = try await ann.send(.text("second, through the server"), to: .user(users[1]))
                    let took = started.duration(to: .now)
                    print("timing: direct send on a frozen link -> \(second.route) after \(took)")
                    #expect(second.route == .server)
                    // the link's idle timeout (1 s here) or the request's own timeout ends the wait
                    #expect(took < .seconds(8), "the fallback took \(took)")
                    try await bobEvents.wait("the second message") { _ in bobEvents.messages.count >= 2 }

                    // A third message as a marker: nothing arrives twice, nothing out of order.
                    let third = try await ann.send(.text("third"), to: .user(users[1]))
                    #expect(third.route != .queued)
                    try await bobEvents.wait("the third message") { _ in bobEvents.messages.count >= 3 }
                    #expect(bobEvents.messages.map(\.id) == [first.messageID, second.messageID, third.messageID])
                    #expect(
                        bobEvents.messages.map(\.body) == [
                            .text("first, directly"), .text("second, through the server"), .text("third"),
                        ])
                    #expect(Array(bobEvents.receivedRoutes.prefix(2)) == [.direct, .server])
                    #expect(bobEvents.messages.allSatisfy { $0.sender == users[0] })
                }
            }
        }
    }
}
