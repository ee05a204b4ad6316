import Foundation
import NIOCore
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyDiscovery
import ParleyLink
import ParleyTesting
import Testing

@testable import ParleyNode

@Suite(.timeLimit(.minutes(1))) struct UnreachablePeerTests {
    /// A peer that is still advertised but whose address swallows every connection (a host off
    /// the LAN, a firewall): after the first dial times out, sends go through the server at once,
    /// also once the backoff has expired (the next dial happens in the background), instead of one
    /// message per dial timeout.
    @Test func sendsToAnAdvertisedButUnreachablePeerGoThroughTheServerAtOnce() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        // Accepts connections and never answers: every TLS handshake waits for the dial timeout,
        // as with a host that left the LAN while its advertisement lingers.
        let blackhole = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { $0.eventLoop.makeSucceededVoidFuture() }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { blackhole.close(promise: nil) }
        // Bob's node as the LAN still shows it; it is not running. Its ID sorts below ann's, so
        // ann opens no standing link to it (that is the higher node's part): only sends dial it.
        // Of two fresh identities ann takes the higher one (63 redraws of bob's against a fixed
        // one of ann's ran out once in a full CI run: about 1 in 200 when ann's sorts low).
        let directories = (directory.subdirectory("node-1"), directory.subdirectory("node-2"))
        let ids = (
            try ParleyNode.nodeID(dataDirectory: directories.0), try ParleyNode.nodeID(dataDirectory: directories.1)
        )
        let (annDirectory, annID, ghost) =
            ids.0.description > ids.1.description
            ? (directories.0, ids.0, ids.1) : (directories.1, ids.1, ids.0)
        try #require(ghost.description < annID.description)
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, server in
            let users = try await registerUsers(["ann", "bob"], on: server)
            var configuration = makeNodeConfiguration(dataDirectory: annDirectory, name: "ann")
            configuration.server = server
            configuration.credentials = .init(userID: users[0], password: "pw-ann")
            configuration.peerTimeout = .seconds(3)  // so a dial may take 3 s
            let ann = try ParleyNode(
                configuration: configuration, discovery: FakeDiscovery(lan: lan), logger: makeTestLogger("ann"))
            try await withRunningNode(ann) { annEvents in
                try await annEvents.waitForLogon()
                let announcer = FakeDiscovery(
                    lan: lan, lingers: true, advertisedPort: UInt16(try #require(blackhole.localAddress?.port)))
                try await announcer.advertise(
                    ServiceRecord(
                        instanceName: "bob", port: 1, nodeID: ghost, userID: users[1].rawValue,
                        userName: "bob")
                )
                try await annEvents.wait("bob on the LAN") { $0.hasPeerUp(ghost) }

                // The first send may wait for one dial.
                let first = try await ann.send(.text("0"), to: .user(users[1]))
                #expect(first.route == .server)
                // Then, for longer than the first backoffs (about 1 s, then 2 s), none waits for a dial.
                var slowest = Duration.zero
                var sent = [first.messageID]
                let started = ContinuousClock.now
                while started.duration(to: .now) < .seconds(4) {
                    let before = ContinuousClock.now
                    let result = try await ann.send(.text("\(sent.count)"), to: .user(users[1]))
                    slowest = max(slowest, before.duration(to: .now))
                    #expect(result.route == .server)
                    sent.append(result.messageID)
                }
                print("timing: \(sent.count) sends to an unreachable peer's user, slowest \(slowest)")
                #expect(slowest < .seconds(1), "a send waited \(slowest)")
                #expect(sent.count > 20)

                // They all reach bob through the server, in order.
                let bob = ParleyClient(configuration: server, logger: makeTestLogger("bob"))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await bob.run() }
                    try await bob.logOn(userID: users[1], password: "pw-bob")
                    var received: [MessageID] = []
                    for await event in bob.events {
                        if case .message(let message) = event { received.append(message.id) }
                        if received.count == sent.count { break }
                    }
                    #expect(received == sent)
                    await bob.shutdownGracefully()
                    try await group.waitForAll()
                }
            }
        }
    }

    @Test func aPeerThatFailedIsNotDialledInlineUntilItsBackoffExpiresThenProbedInTheBackgroundOnce() {
        var memory = DialMemory(backoff: Backoff(initial: .seconds(1), maximum: .seconds(30)))
        let peer = NodeID(subjectPublicKeyInfo: [1, 2, 3])
        let start = ContinuousClock.now
        #expect(memory.decide(peer, inline: true, now: start) == .dial)

        #expect(memory.failed(peer, now: start, randomFactor: 1) == .seconds(1))
        #expect(memory.decide(peer, inline: true, now: start + .milliseconds(500)) == .wait)
        #expect(memory.decide(peer, inline: false, now: start + .milliseconds(500)) == .wait)
        // Expired: the send path asks for one background dial, and does not dial itself.
        #expect(memory.decide(peer, inline: true, now: start + .seconds(1)) == .probeInBackground)
        #expect(memory.decide(peer, inline: true, now: start + .seconds(1)) == .wait)
        #expect(memory.decide(peer, inline: false, now: start + .seconds(1)) == .dial)

        // Failing again doubles the delay, up to the maximum.
        #expect(memory.failed(peer, now: start, randomFactor: 1) == .seconds(2))
        for _ in 0..<10 { memory.failed(peer, now: start, randomFactor: 1) }
        #expect(memory.failed(peer, now: start, randomFactor: 1) == .seconds(30))

        // A link that came up, or news from discovery, ends the backoff.
        memory.forget(peer)
        #expect(memory.decide(peer, inline: true, now: start) == .dial)
        #expect(!memory.isBackingOff(peer))
    }

    @Test func backoffDelaysAreJittered() {
        let backoff = Backoff(initial: .seconds(10), maximum: .seconds(60))
        let delays = (0..<50).map { _ in backoff.delay(afterFailures: 1) }
        #expect(delays.allSatisfy { $0 >= .seconds(8) && $0 <= .seconds(12) })
        #expect(Set(delays).count > 1)
        #expect(backoff.delay(afterFailures: 3, randomFactor: 1) == .seconds(40))
        #expect(backoff.delay(afterFailures: 100, randomFactor: 1) == .seconds(60))
    }
}
