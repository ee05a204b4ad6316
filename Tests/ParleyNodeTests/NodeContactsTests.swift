import Foundation
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyNodeStore
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct NodeContactsTests {
    /// Contacts and presence come from the server while it is there; when it goes, the node keeps
    /// the cached list and shows presence from the LAN (the peer's advertised status and whether
    /// it is reachable), marked as such, one state for the application either way.
    @Test func presenceFollowsTheServerThenTheLAN() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        try await withServer(dataDirectory: directory.subdirectory("server")) { server, configuration in
            let users = try await registerUsers(["ann", "bob"], on: configuration)
            let (ann, bob) = (users[0], users[1])
            let annNode = try makeServerNode("ann", ann, directory: directory, server: configuration, lan: lan)
            let bobNode = try makeServerNode("bob", bob, directory: directory, server: configuration, lan: lan)
            try await withRunningNode(annNode) { annEvents in
                try await annEvents.waitForLogon()
                try await withRunningNode(bobNode) { bobEvents in
                    try await bobEvents.waitForLogon()
                    let added = try await annNode.addContact(bob, displayName: .custom("Bobby"))
                    #expect(added.name == "Bobby")
                    let listed = try await annNode.contacts()
                    #expect(listed.isCached == false)
                    #expect(listed.value.map(\.userID) == [bob])

                    try await bobNode.setPresence(.away, text: "at lunch")
                    try await annEvents.wait("bob away, from the server") {
                        $0.presence(of: bob)?.matches(.away, "at lunch", .server) == true
                    }
                    // The LAN carries the same state in the advertised status.
                    #expect(bobNode.status == "away: at lunch")

                    // The server goes away: the LAN tells the same state, marked as LAN-derived.
                    await server.shutdown()
                    try await annEvents.wait("bob away, from the LAN") {
                        $0.presence(of: bob)?.matches(.away, "at lunch", .lan) == true
                    }
                    #expect(annNode.contactPresences()[bob]?.source == .lan)
                    let cached = try await annNode.contacts()
                    #expect(cached.isCached == true)
                    #expect(cached.value.map(\.name) == ["Bobby"])
                    await #expect(throws: ParleyError.self) { try await annNode.addContact(ann) }
                }
                // Bob's node stops: gone from the LAN, so offline.
                try await annEvents.wait("bob offline, from the LAN") {
                    $0.presence(of: bob)?.matches(.offline, "", .lan) == true
                }
            }
            // The cache survives a restart of the node.
            let registry = try NodeRegistry(dataDirectory: directory.subdirectory("ann"))
            #expect(try registry.cachedContacts().map(\.userID) == [bob])
        }
    }

    @Test func aLANStatusReadsAsPresence() {
        #expect(ParleyNode.presence(fromStatus: "busy") == Presence(state: .busy))
        #expect(ParleyNode.presence(fromStatus: "away: at lunch") == Presence(state: .away, text: "at lunch"))
        // A free text from a node that predates presence states: online, with that text.
        #expect(ParleyNode.presence(fromStatus: "in the lab") == Presence(state: .online, text: "in the lab"))
        #expect(ParleyNode.presence(fromStatus: "offline") == Presence(state: .online, text: "offline"))
        let long = String(repeating: "x", count: 100)
        #expect(ParleyNode.status(for: .busy, text: long).utf8.count == ParleyNode.maximumStatusLength)
    }
}

extension Presence {
    fileprivate func matches(_ state: PresenceState, _ text: String, _ source: Source) -> Bool {
        self.state == state && self.text == text && self.source == source
    }
}

extension [ParleyNode.Event] {
    /// The last presence reported for `user`.
    fileprivate func presence(of user: UserID) -> Presence? {
        last { event in
            if case .contactPresence(user, _) = event { return true }
            return false
        }
        .flatMap { event in
            if case .contactPresence(_, let presence) = event { return presence }
            return nil
        }
    }
}
