import Foundation
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct CrossRouteOrderTests {
    /// Ann writes to bob while he is away: the server stores the message. Bob's node then comes up
    /// on the LAN without the server, and ann's next message goes direct. It must not overtake
    /// the first one, which bob has not got yet: the first one goes direct too, just before it.
    /// When bob's node later logs on and the server delivers the first one again, bob's node
    /// drops the copy (acknowledging it: ann gets the receipt), so bob has each message once.
    @Test func aMessageThroughTheServerIsNotOvertakenByALaterDirectOne() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, server in
            let users = try await registerUsers(["ann", "bob"], on: server)
            let ann = try makeServerNode("ann", users[0], directory: directory, server: server, lan: lan)
            try await withRunningNode(ann) { annEvents in
                try await annEvents.waitForLogon()
                let first = try await ann.send(.text("first, while you are away"), to: .user(users[1]))
                #expect(first.route == .server)

                // Bob on the LAN only: he claims his user on the link, the server is not asked.
                var lanConfiguration = makeNodeConfiguration(
                    dataDirectory: directory.subdirectory("bob"), name: "bob")
                lanConfiguration.credentials = .init(userID: users[1], password: "pw-bob")
                let bobOnLAN = try ParleyNode(
                    configuration: lanConfiguration, discovery: FakeDiscovery(lan: lan), logger: makeTestLogger("bob"))
                try await withRunningNode(bobOnLAN) { bobEvents in
                    try await annEvents.wait("bob on the LAN") { $0.hasPeerUp(bobOnLAN.nodeID) }
                    let second = try await ann.send(.text("second, on the LAN"), to: .user(users[1]))
                    #expect(second.route == .direct)
                    try await bobEvents.wait("both messages") { _ in bobEvents.messages.count == 2 }
                    #expect(bobEvents.messages.map(\.id) == [first.messageID, second.messageID])
                    #expect(bobEvents.receivedRoutes == [.direct, .direct])
                }

                // Bob's node with the server: the stored copy of the first message comes, is
                // dropped as a duplicate and acknowledged.
                let bobWithServer = try makeServerNode("bob", users[1], directory: directory, server: server)
                try await withRunningNode(bobWithServer) { bobEvents in
                    try await bobEvents.waitForLogon()
                    try await annEvents.wait("the receipt of the first message") { events in
                        events.contains { event in
                            if case .deliveryReceipt(let receipt) = event {
                                return receipt.messageID == first.messageID && receipt.recipient == users[1]
                            }
                            return false
                        }
                    }
                    #expect(bobEvents.messages.isEmpty, "a copy came again: \(bobEvents.messages)")
                }
            }
        }
    }

    /// With the server away, whois and find answer from the node's cache, marked as cached.
    @Test func findAnswersFromTheCacheWhenTheServerIsAway() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let serverDirectory = directory.subdirectory("server")
        let annDirectory = directory.subdirectory("ann")
        let users = try await withServer(dataDirectory: serverDirectory) { _, server in
            let users = try await registerUsers(["ann", "bob", "bea"], on: server)
            let ann = try makeServerNode("ann", users[0], directory: directory, server: server)
            try await withRunningNode(ann) { annEvents in
                try await annEvents.waitForLogon()
                let found = try await ann.findUsers(UserQuery(filters: [.init(.userName, .prefix, "b")]))
                #expect(!found.isCached)
                #expect(found.value.users.map(\.userName) == ["bob", "bea"])
            }
            return users
        }
        // The server is gone: the node starts, cannot reach it, and answers from its cache.
        var configuration = makeNodeConfiguration(dataDirectory: annDirectory, name: "ann")
        configuration.credentials = .init(userID: users[0], password: "pw-ann")
        let ann = try ParleyNode(configuration: configuration, discovery: nil, logger: makeTestLogger("ann"))
        try await withRunningNode(ann) { _ in
            let found = try await ann.findUsers(UserQuery(filters: [.init(.userName, .prefix, "B")]))
            #expect(found.isCached)
            #expect(Set(found.value.users.map(\.userID)) == [users[1], users[2]])
            #expect(found.value.users.allSatisfy { !$0.isOnline })
            let exact = try await ann.findUsers(UserQuery(filters: [.init(.userName, .exact, "bea")])).value
            #expect(exact.users.map(\.userID) == [users[2]])
            let whois = try await ann.whois(users[1])
            #expect(whois.isCached && whois.value.userName == "bob")
        }
    }
}
