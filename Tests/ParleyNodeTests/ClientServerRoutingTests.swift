import Foundation
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyNodeStore
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct ClientServerRoutingTests {
    @Test func aUserWhoForbidsDirectLinksIsReachedThroughTheServer() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, server in
            let users = try await registerUsers(["ann", "bob"], on: server)
            let ann = try makeServerNode("ann", users[0], directory: directory, server: server)
            let bob = try makeServerNode(
                "bob", users[1], directory: directory, server: server, allowsDirectLinks: false)
            try await withRunningNode(ann) { annEvents in
                try await withRunningNode(bob) { bobEvents in
                    try await annEvents.waitForLogon()
                    try await bobEvents.waitForLogon()
                    let sent = try await ann.send(.text("via the server"), to: .user(users[1]))
                    #expect(sent.route == .server)
                    try await bobEvents.wait("the message") { _ in bobEvents.messages.count == 1 }
                    #expect(bobEvents.receivedRoutes == [.server])
                    #expect(bobEvents.messages.first?.id == sent.messageID)
                    #expect(ann.peers().isEmpty)
                }
            }
        }
    }

    @Test func aQueuedMessageLeavesWhenTheServerComesBack() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let serverDirectory = directory.subdirectory("server")
        let users = try await withServer(dataDirectory: serverDirectory) { _, server in
            try await registerUsers(["ann", "bob"], on: server)
        }
        // Ann reaches the server through a proxy that refuses connections until the server is back:
        // no port is released and bound again, which another test could take meanwhile.
        let proxy = try await FreezingProxy()
        var viaProxy = ParleyClient.Configuration(host: "127.0.0.1", port: proxy.port)
        // The server is not up yet, so its certificate is trusted on first use (through the proxy).
        viaProxy.security = .tls(.trustOnFirstUse(knownServersFile: directory.subdirectory("known-servers")))
        let ann = try makeServerNode("ann", users[0], directory: directory, server: viaProxy)
        let annRegistry = try NodeRegistry(dataDirectory: directory.subdirectory("ann"))
        try await withRunningNode(ann) { annEvents in
            let sent = try await ann.send(.text("when the server is back"), to: .user(users[1]))
            #expect(sent.route == .queued)
            #expect(try annRegistry.pendingCount() == 1)
            try await withServer(dataDirectory: serverDirectory) { _, server in
                proxy.forward(to: server.port)
                try await annEvents.waitForLogon()
                try await annEvents.wait("the route to change") { $0.contains(.routeChanged(.user(users[1]), .server)) }
                #expect(try annRegistry.pendingCount() == 0)
                // Bob logs on later and gets it once, from the server.
                let bob = try makeServerNode("bob", users[1], directory: directory, server: server)
                try await withRunningNode(bob) { bobEvents in
                    try await bobEvents.wait("the queued message") { _ in bobEvents.messages.count == 1 }
                    #expect(bobEvents.receivedRoutes == [.server])
                    #expect(bobEvents.messages.first?.id == sent.messageID)
                }
            }
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct LANImpostorTests {
    @Test func aLANNodeClaimingAVouchedUserIsRefusedAndTheServerCarriesTheMessage() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, server in
            let users = try await registerUsers(["ann", "bob"], on: server)
            let ann = try makeServerNode("ann", users[0], directory: directory, server: server, lan: lan)
            let bob = try makeServerNode("bob", users[1], directory: directory, server: server)
            // Mallory is on the LAN, without the server, and claims to be bob.
            var malloryConfiguration = makeNodeConfiguration(
                dataDirectory: directory.subdirectory("mallory"),
                name: "bob"
            )
            malloryConfiguration.credentials = .init(userID: users[1], password: "")
            let mallory = try ParleyNode(
                configuration: malloryConfiguration,
                discovery: FakeDiscovery(lan: lan),
                logger: makeTestLogger("mallory")
            )
            try await withRunningNode(bob) { bobEvents in
                try await bobEvents.waitForLogon()
                try await withRunningNode(ann) { annEvents in
                    try await annEvents.waitForLogon()
                    try await withRunningNode(mallory) { _ in
                        try await annEvents.wait("mallory on the LAN") { $0.hasPeerUp(mallory.nodeID) }
                        // Mallory dials ann to send as bob: refused.
                        let forged = try await mallory.send(.text("I am bob"), to: .node(ann.nodeID))
                        #expect(forged.route == .queued)
                        let sent = try await ann.send(.text("for the real bob"), to: .user(users[1]))
                        #expect(sent.route != .queued)
                        try await bobEvents.wait("the message") { _ in bobEvents.messages.count == 1 }
                        #expect(bobEvents.messages.first?.body == .text("for the real bob"))
                        #expect(annEvents.messages.isEmpty)
                        #expect(!annEvents.all.isLinked(to: mallory.nodeID))
                    }
                }
            }
        }
    }
}
