import Foundation
import ParleyClient
import ParleyCore
import ParleyLink
import ParleyNode
import ParleyNodeStore
import ParleyServer
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct PeerToPeerTests {
    @Test func twoNodesExchangeTextAndBinaryDirectly() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withTwoLANNodes(in: directory) { ann, annEvents, bob, bobEvents in
            let text = try await ann.send(.text("hello bob"), to: .node(bob.nodeID))
            #expect(text.route == .direct)
            let binary = try await ann.send(.binary([0, 1, 2, 255]), to: .node(bob.nodeID))
            #expect(binary.route == .direct)
            let reply = try await bob.send(.text("hi ann"), to: .node(ann.nodeID))
            #expect(reply.route == .direct)
            try await bobEvents.wait("two messages") { _ in bobEvents.messages.count == 2 }
            #expect(bobEvents.messages.map(\.body) == [.text("hello bob"), .binary([0, 1, 2, 255])])
            #expect(bobEvents.messages.map(\.id) == [text.messageID, binary.messageID])
            try await annEvents.wait("the reply") { _ in annEvents.messages.count == 1 }
            #expect(annEvents.messages.first?.body == .text("hi ann"))
            #expect(
                annEvents.all.contains { event in
                    if case .messageReceived(_, let from, let route) = event {
                        return from == bob.nodeID && route == .direct
                    }
                    return false
                }
            )
            let bobInfo = ann.peers().first { $0.nodeID == bob.nodeID }
            #expect(bobInfo?.name == "bob")
            #expect(bobInfo?.online == true)
            // Resending with the same ID is acknowledged but not delivered again.
            let again = try await ann.send(.text("hello bob"), to: .node(bob.nodeID), id: text.messageID)
            #expect(again.route == .direct)
            let last = try await ann.send(.text("last"), to: .node(bob.nodeID))
            #expect(last.route == .direct)
            try await bobEvents.wait("the last message") { _ in bobEvents.messages.count >= 3 }
            #expect(
                bobEvents.messages.map(\.body) == [.text("hello bob"), .binary([0, 1, 2, 255]), .text("last")])
        }
    }

    @Test func aQueuedMessageSurvivesARestartAndIsDeliveredOnce() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let annDirectory = directory.subdirectory("ann")
        let bob = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: directory.subdirectory("bob"), name: "bob"),
            discovery: FakeDiscovery(lan: lan),
            logger: makeTestLogger("bob")
        )
        let first = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: annDirectory, name: "ann"),
            discovery: FakeDiscovery(lan: lan),
            logger: makeTestLogger("ann")
        )
        let sent = try await withRunningNode(first) { _ in
            try await first.send(.text("while you were away"), to: .node(bob.nodeID))
        }
        #expect(sent.route == .queued)
        #expect(try NodeRegistry(dataDirectory: annDirectory).pendingForNode(nil).count == 1)

        let restarted = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: annDirectory, name: "ann"),
            discovery: FakeDiscovery(lan: lan),
            logger: makeTestLogger("ann")
        )
        #expect(restarted.nodeID == first.nodeID)
        try await withRunningNode(restarted) { annEvents in
            try await withRunningNode(bob) { bobEvents in
                try await bobEvents.wait("the queued message") { _ in bobEvents.messages.count == 1 }
                #expect(bobEvents.messages.first?.id == sent.messageID)
                #expect(bobEvents.messages.first?.body == .text("while you were away"))
                try await annEvents.wait("the outbox to empty") { _ in
                    (try? NodeRegistry(dataDirectory: annDirectory).pendingForNode(nil).isEmpty) == true
                }
                // Later flushes must not deliver it again.
                let after = try await restarted.send(.text("next"), to: .node(bob.nodeID))
                #expect(after.route == .direct)
                try await bobEvents.wait("the next message") { _ in bobEvents.messages.count == 2 }
                #expect(bobEvents.messages.map(\.body) == [.text("while you were away"), .text("next")])
            }
        }
    }

    @Test func anImpostorOfAPinnedUserIsRefused() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let annDirectory = directory.subdirectory("ann")
        // Ann's node has pinned the real user 42's key.
        let real = try NodeIdentity(dataDirectory: directory.subdirectory("real"))
        try NodeRegistry(dataDirectory: annDirectory).checkKey(
            forUser: 42,
            nodeID: real.nodeID,
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
                // both sides say so: ann refused mallory, mallory was refused by ann
                try await annEvents.wait("ann's refusal") { events in
                    events.contains { event in
                        if case .linkRefused(let node, let error, byPeer: false) = event {
                            return node == mallory.nodeID && error.code == .pinnedKeyMismatch
                        }
                        return false
                    }
                }
                try await malloryEvents.wait("mallory told it was refused") { events in
                    events.contains { if case .linkRefused(ann.nodeID, _, byPeer: true) = $0 { true } else { false } }
                }

                // A refused node waits (5 s, doubling) before it dials again, rather than costing
                // both sides a TLS handshake in a tight loop. Watch for two seconds (the absence of
                // a storm cannot be awaited as an event): how often does mallory count a link up?
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
                #expect(ups <= 1, "mallory's node linked to ann \(ups) times in \(start.duration(to: .now))")
                #expect(annEvents.messages.isEmpty)
                #expect(!annEvents.all.isLinked(to: mallory.nodeID))
            }
        }
    }

    @Test func aPeerWhoseLinkDiesIsShownDownDespiteDiscovery() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let ann = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: directory.subdirectory("ann"), name: "ann"),
            discovery: FakeDiscovery(lan: lan),
            logger: makeTestLogger("ann")
        )
        let bob = try ParleyNode(
            configuration: makeNodeConfiguration(dataDirectory: directory.subdirectory("bob"), name: "bob"),
            discovery: FakeDiscovery(lan: lan, lingers: true),
            logger: makeTestLogger("bob")
        )
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(bob) { _ in
                _ = try await ann.send(.text("are you there"), to: .node(bob.nodeID))
                try await annEvents.wait("a link to bob") { $0.isLinked(to: bob.nodeID) }
            }
            let stopped = ContinuousClock.now
            try await annEvents.wait("bob to go down", timeout: .seconds(3)) { $0.contains(.peerDown(bob.nodeID)) }
            #expect(stopped.duration(to: .now) < .seconds(3))
            #expect(ann.peers().first { $0.nodeID == bob.nodeID }?.online != true)
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct ClientServerTests {
    @Test func firstMessageGoesDirectAndSurvivesTheServer() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var serverConfiguration = ParleyServer.Configuration(dataDirectory: directory.subdirectory("server"))
        serverConfiguration.host = "127.0.0.1"
        serverConfiguration.port = 0
        serverConfiguration.portSearchLimit = 1
        serverConfiguration.passwordCost = .insecureFastForTesting
        let server = ParleyServer(configuration: serverConfiguration, logger: makeTestLogger("server"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let address = try await server.listeningAddress
            var clientConfiguration = ParleyClient.Configuration(host: address.host, port: address.port)
            if let fingerprint = server.tlsCertificateFingerprint {
                clientConfiguration.security = .tls(.fingerprint(fingerprint))
            }
            // Register the two users through a plain client.
            var users: [UserID] = []
            for name in ["ann", "bob"] {
                let client = ParleyClient(configuration: clientConfiguration, logger: makeTestLogger("client"))
                try await withThrowingTaskGroup(of: Void.self) { inner in
                    inner.addTask { try await client.run() }
                    users.append(try await client.register(UserInfo(userName: name), password: "pw-\(name)").userID)
                    await client.shutdownGracefully()
                    try await inner.waitForAll()
                }
            }
            func node(_ name: String, _ user: UserID) throws -> ParleyNode {
                var configuration = makeNodeConfiguration(dataDirectory: directory.subdirectory(name), name: name)
                configuration.server = clientConfiguration
                configuration.credentials = .init(userID: user, password: "pw-\(name)")
                return try ParleyNode(configuration: configuration, discovery: nil, logger: makeTestLogger(name))
            }
            let ann = try node("ann", users[0])
            let bob = try node("bob", users[1])
            try await withRunningNode(ann) { annEvents in
                try await withRunningNode(bob) { bobEvents in
                    for events in [annEvents, bobEvents] {
                        try await events.wait("logon") { all in
                            all.contains { if case .serverConnection(.loggedOn) = $0 { true } else { false } }
                        }
                    }
                    let first = try await ann.send(.text("direct please"), to: .user(users[1]))
                    #expect(first.route == .direct)
                    try await bobEvents.wait("the first message") { _ in bobEvents.messages.count == 1 }
                    #expect(bobEvents.messages.first?.sender == users[0])

                    await server.shutdown()
                    try await group.waitForAll()
                    try await annEvents.wait("the server to go") { events in
                        events.contains { if case .serverConnection(.disconnected) = $0 { true } else { false } }
                    }
                    let second = try await ann.send(.text("still direct"), to: .user(users[1]))
                    #expect(second.route == .direct)
                    try await bobEvents.wait("the second message") { _ in bobEvents.messages.count == 2 }
                    #expect(bobEvents.messages.map(\.body) == [.text("direct please"), .text("still direct")])

                    let whois = try await ann.whois(users[1])
                    #expect(whois.isCached)
                    #expect(whois.value.userName == "bob")
                    await #expect(throws: ParleyError.self) { try await ann.whois(UserID(4_000_000)) }
                }
            }
        }
    }
}
