import Foundation
import ParleyCore
import ParleyNode
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct CacheFallbackTests {
    /// Ann's node met bob's on the LAN once. It restarts with neither discovery (avahi-daemon
    /// down, say) nor a server: its node cache still knows bob's node, key and last address, so a
    /// message to bob goes direct.
    @Test func aPeerMetBeforeIsReachedFromTheCacheWithoutDiscoveryOrServer() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        var annConfiguration = makeNodeConfiguration(dataDirectory: directory.subdirectory("ann"), name: "ann")
        annConfiguration.credentials = .init(userID: 2001, password: "unused")
        var bobConfiguration = makeNodeConfiguration(dataDirectory: directory.subdirectory("bob"), name: "bob")
        bobConfiguration.credentials = .init(userID: 2002, password: "unused")
        let bob = try ParleyNode(
            configuration: bobConfiguration, discovery: FakeDiscovery(lan: lan), logger: makeTestLogger("bob"))
        try await withRunningNode(bob) { bobEvents in
            let annOnLAN = try ParleyNode(
                configuration: annConfiguration, discovery: FakeDiscovery(lan: lan), logger: makeTestLogger("ann"))
            try await withRunningNode(annOnLAN) { annEvents in
                try await annEvents.wait("bob on the LAN, linked") { $0.isLinked(to: bob.nodeID) }
                let first = try await annOnLAN.send(.text("met on the LAN"), to: .user(2002))
                #expect(first.route == .direct)
            }

            let annAlone = try ParleyNode(
                configuration: annConfiguration, discovery: nil, logger: makeTestLogger("ann"))
            try await withRunningNode(annAlone) { _ in
                #expect(annAlone.peers().isEmpty)  // nothing on the LAN, no server
                let second = try await annAlone.send(.text("found from the cache"), to: .user(2002))
                #expect(second.route == .direct)
                let whois = try await annAlone.whois(2002)
                #expect(whois.isCached && whois.value.userName == "bob")
            }
            try await bobEvents.wait("both messages") { _ in bobEvents.messages.count == 2 }
            #expect(bobEvents.messages.map(\.body) == [.text("met on the LAN"), .text("found from the cache")])
            #expect(bobEvents.receivedRoutes == [.direct, .direct])
        }
    }
}
