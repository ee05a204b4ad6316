import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Testing

/// Test keys: the P-256 public keys of private keys 1, 2 and 3, as DER SubjectPublicKeyInfo, with
/// their node IDs, computed independently (Python's `cryptography`, `hashlib`, `base64`).
enum TestNodeKey {
    /// The DER before X and Y: SEQUENCE, id-ecPublicKey, prime256v1, BIT STRING, uncompressed.
    static let prefix = "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
    static let one = key(
        x: "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
        y: "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
    )
    static let oneID = "ltjff6ym5cjsinx27dgncbajqg4j5zfnnop6tyvcw7trvlfsptjq"
    static let two = key(
        x: "7cf27b188d034f7e8a52380304b51ac3c08969e277f21b35a60b48fc47669978",
        y: "07775510db8ed040293d9ac69f7430dbba7dade63ce982299e04b79d227873d1"
    )
    static let twoID = "3qgomm63zsit3l5pus4jvrcnrttih7p4h5qmrppscij3t4vvgs5a"
    static let three = key(
        x: "5ecbe4d1a6330a44c8f7ef951d4bf165e6c6b721efada985fb41661bc6e7fd6c",
        y: "8734640c4998ff7e374b06ce1a64a2ecd82ab036384fb83d9a79b127a27d5032"
    )
    static let threeID = "fomfxlprxlecsp3lslumblgbcon4ljpmxp4xuytr3tynj5wgrl3a"

    private static func key(x: String, y: String) -> [UInt8] { hex(prefix + x + y) }

    private static func hex(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16) ?? 0)
            index = next
        }
        return bytes
    }
}

extension TestServer {
    func clientConfiguration(node: NodeAdvertisement?) -> ParleyClient.Configuration {
        var configuration = clientConfiguration
        configuration.node = node
        return configuration
    }
}

@Suite("Node keys in the directory", .timeLimit(.minutes(1)))
struct NodeKeyTests {
    static let nodeOne = NodeAdvertisement(
        nodeID: TestNodeKey.oneID,
        publicKey: TestNodeKey.one,
        directAddresses: ["192.168.1.20:7421", "[fe80::1%eth0]:7421"],
        allowsDirectLinks: true
    )

    @Test("a node declared at registration and logon is shown to other users; a client without one has none")
    func declaredNodeIsShown() async throws {
        // The server's clock moves only when the test moves it: the second logon's record is
        // later than the first however fast the machine.
        let clock = ManualClock()
        try await withTestServer(ServerChanges { $0.clock = clock.serverClock }) { server in
            try await withTestClient(of: server.clientConfiguration(node: Self.nodeOne)) { alice in
                let registered = try await alice.client.register(UserInfo(userName: "alice"), password: "pw-a")
                #expect(registered.nodeID == TestNodeKey.oneID)
                #expect(registered.nodePublicKey == TestNodeKey.one)
                #expect(registered.directAddresses == Self.nodeOne.directAddresses)
                #expect(registered.allowsDirectLinks)
                let firstRecorded = try #require(registered.nodeKeyUpdatedAt)

                try await withTestClient(of: server.clientConfiguration) { bob in
                    let bobID = try await bob.register("bob")
                    let seen = try await bob.client.userInfo(registered.userID)
                    #expect(seen.nodeID == TestNodeKey.oneID)
                    #expect(seen.nodePublicKey == TestNodeKey.one)
                    #expect(seen.directAddresses == Self.nodeOne.directAddresses)
                    #expect(seen.allowsDirectLinks)
                    #expect(seen.nodeKeyUpdatedAt == firstRecorded)

                    let found = try await bob.client.findUsers(UserQuery(filters: [.init(.userName, .exact, "alice")]))
                    #expect(found.users.map(\.nodeID) == [TestNodeKey.oneID])
                    #expect(found.users.map(\.nodePublicKey) == [TestNodeKey.one])
                    #expect(found.users.map(\.directAddresses) == [Self.nodeOne.directAddresses])

                    // A client that declares no node: old clients keep working, and show no node.
                    let own = try await alice.client.userInfo(bobID)
                    #expect(own.nodeID == nil)
                    #expect(own.nodePublicKey == nil)
                    #expect(own.directAddresses.isEmpty)
                    #expect(!own.allowsDirectLinks)
                    #expect(own.nodeKeyUpdatedAt == nil)

                    // Changing the directory fields leaves the node alone.
                    let updated = try await alice.client.updateUserInfo(UserInfo(userName: "alice", firstName: "Alice"))
                    #expect(updated.nodeID == TestNodeKey.oneID)
                    #expect(updated.nodePublicKey == TestNodeKey.one)

                    // Every logon records the node again.
                    try await alice.client.logOff()
                    clock.advance(by: .milliseconds(5))
                    let logon = try await alice.client.logOn(userID: registered.userID, password: "pw-a")
                    #expect(logon.user.nodeID == TestNodeKey.oneID)
                    #expect(try #require(logon.user.nodeKeyUpdatedAt) > firstRecorded)
                    #expect(
                        try await bob.client.userInfo(registered.userID).nodeKeyUpdatedAt == logon.user.nodeKeyUpdatedAt
                    )
                }
            }
        }
    }

    @Test(
        "a malformed node is refused with INVALID_REQUEST and nothing is recorded",
        arguments: [
            "another key's ID", "upper-case ID", "no ID", "not a key", "compressed key", "trailing byte",
            "nine addresses", "long address", "no port", "port 0", "port 65536", "space", "bare IPv6",
            "ID without key", "addresses without key",
        ]
    )
    func malformedNode(problem: String) async throws {
        var node = NodeAdvertisement(nodeID: TestNodeKey.twoID, publicKey: TestNodeKey.two)
        switch problem {
        case "another key's ID": node.nodeID = TestNodeKey.threeID
        case "upper-case ID": node.nodeID = TestNodeKey.twoID.uppercased()
        case "no ID": node.nodeID = ""
        case "not a key": node.publicKey = Array(repeating: 7, count: 91)
        case "compressed key":
            node.publicKey =
                [0x30, 0x39, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08]
                + [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x22, 0x00, 0x02]
                + TestNodeKey.two[27..<59]
        case "trailing byte": node.publicKey.append(0)
        case "nine addresses": node.directAddresses = (1...9).map { "10.0.0.\($0):7421" }
        case "long address": node.directAddresses = [String(repeating: "a", count: 124) + ":7421"]
        case "no port": node.directAddresses = ["10.0.0.1"]
        case "port 0": node.directAddresses = ["10.0.0.1:0"]
        case "port 65536": node.directAddresses = ["10.0.0.1:65536"]
        case "space": node.directAddresses = ["10.0.0.1 :7421"]
        case "bare IPv6": node.directAddresses = ["fe80::1:7421"]
        case "ID without key": node.publicKey = []
        default:
            node.publicKey = []
            node.nodeID = ""
            node.directAddresses = ["10.0.0.1:7421"]
        }
        try await withTestServer { server in
            let alice = try await withTestClient(of: server.clientConfiguration(node: Self.nodeOne)) { test in
                let alice = try await test.client.register(UserInfo(userName: "alice"), password: "pw-a").userID
                try await test.client.logOff()
                return alice
            }
            try await withTestClient(of: server.clientConfiguration(node: node)) { test in
                try await expectError(.invalidRequest) {
                    try await test.client.logOn(userID: alice, password: "pw-a")
                }
                try await expectError(.invalidRequest) { try await test.register("mallory") }
                // Still a guest, and the refused node was not recorded.
                #expect(test.client.loggedOnUser == nil)
                #expect(try await test.client.findUserIDs(named: "mallory").isEmpty)
                let found = try await test.client.findUsers(UserQuery())
                #expect(found.users.map(\.nodeID) == [TestNodeKey.oneID])
            }
        }
    }

    @Test("the recorded node outlives a server restart until a later logon replaces it")
    func nodeSurvivesRestart() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (alice, first) = try await withTestServer(dataDirectory: directory) { server in
            try await withTestClient(of: server.clientConfiguration(node: Self.nodeOne)) { test in
                let user = try await test.client.register(UserInfo(userName: "alice"), password: "pw-a")
                return (user.userID, try #require(user.nodeKeyUpdatedAt))
            }
        }
        try await withTestServer(dataDirectory: directory) { server in
            // A logon without a node keeps the recorded one.
            try await withTestClient(of: server.clientConfiguration) { test in
                let logon = try await test.client.logOn(userID: alice, password: "pw-a")
                #expect(logon.user.nodeID == TestNodeKey.oneID)
                #expect(logon.user.nodePublicKey == TestNodeKey.one)
                #expect(logon.user.directAddresses == Self.nodeOne.directAddresses)
                #expect(logon.user.allowsDirectLinks)
                #expect(logon.user.nodeKeyUpdatedAt == first)
                try await test.client.logOff()
            }
            // A logon with another node replaces it as a whole.
            let nodeTwo = NodeAdvertisement(nodeID: TestNodeKey.twoID, publicKey: TestNodeKey.two)
            try await withTestClient(of: server.clientConfiguration(node: nodeTwo)) { test in
                let logon = try await test.client.logOn(userID: alice, password: "pw-a")
                #expect(logon.user.nodeID == TestNodeKey.twoID)
                #expect(logon.user.nodePublicKey == TestNodeKey.two)
                #expect(logon.user.directAddresses.isEmpty)
                #expect(!logon.user.allowsDirectLinks)
                #expect(try #require(logon.user.nodeKeyUpdatedAt) > first)
                #expect(try await test.client.userInfo(alice).nodeID == TestNodeKey.twoID)
            }
        }
    }

    @Test("the automatic logon after a reconnect declares the node again")
    func reconnectDeclaresNode() async throws {
        try await withRestartableServer { first, _, restart in
            var configuration = first.clientConfiguration
            configuration.node = Self.nodeOne
            try await withTestClient(of: configuration) { test in
                let alice = try await test.client.register(UserInfo(userName: "alice"), password: "pw-a")
                // The event pump may not have recorded the registration's own logon yet:
                // count from after it, so only the logon after the restart matches below.
                try await test.waitForEvent("the registration's logon", after: 0) { event -> Bool? in
                    event == .connectionStateChanged(.loggedOn(alice.userID)) ? true : nil
                }
                let before = test.events.items.count
                let restarted = try await restart {}
                #expect(restarted)

                try await test.waitForEvent("logging on again", after: before) { event -> Bool? in
                    event == .connectionStateChanged(.loggedOn(alice.userID)) ? true : nil
                }
                let info = try await test.client.userInfo(alice.userID)
                #expect(info.nodeID == TestNodeKey.oneID)
                #expect(try #require(info.nodeKeyUpdatedAt) > #require(alice.nodeKeyUpdatedAt))
            }
        }
    }

    @Test(
        "a logon from the node of a stale session takes it over; another node gets SESSION_EXISTS and records nothing")
    func sameNodeTakesOverStaleSession() async throws {
        try await withTestServer { server in
            let alice = try await withTestClient(of: server.clientConfiguration(node: Self.nodeOne)) { test in
                let alice = try await test.client.register(UserInfo(userName: "alice"), password: "pw-a").userID
                try await test.client.logOff()
                return alice
            }
            // The stale session: node one logged on, then its host dropped off the network.
            let stale = try await RawConnection.connect(to: server.address)
            try await stale.hello()
            var logon = Parley_V1_LogonRequest()
            logon.userID = alice.rawValue
            logon.password = "pw-a"
            logon.nodePublicKey = Data(TestNodeKey.one)
            logon.nodeID = TestNodeKey.oneID
            #expect(try await stale.request(.logOn, logon).type == FrameType.logOn.response)

            // Another node, right password: refused, and the recorded node stays node one.
            let nodeTwo = NodeAdvertisement(nodeID: TestNodeKey.twoID, publicKey: TestNodeKey.two)
            try await withTestClient(of: server.clientConfiguration(node: nodeTwo)) { test in
                try await expectError(.sessionExists) { try await test.client.logOn(userID: alice, password: "pw-a") }
                try await expectError(.invalidCredentials) {
                    try await test.client.logOn(userID: alice, password: "wrong")
                }
                _ = try await test.register("bob")
                #expect(try await test.client.userInfo(alice).nodeID == TestNodeKey.oneID)
            }

            // The restarted node one: takes the stale session over.
            try await withTestClient(of: server.clientConfiguration(node: Self.nodeOne)) { test in
                let result = try await test.client.logOn(userID: alice, password: "pw-a")
                #expect(result.user.nodeID == TestNodeKey.oneID)
                let frames = try await stale.waitUntilClosed()
                let replaced = try #require(frames.first { $0.type == .sessionReplaced })
                let reason = try replaced.decodeMeta(as: Parley_V1_SessionReplacedEvent.self).reason
                #expect(reason.contains("same node"))
                #expect(stale.connectionErrors.map(\.code) == [.sessionReplaced])
                #expect(try await test.client.userInfo(alice).isOnline)
            }
        }
    }

    @Test("the REGISTER answer shows no node fields the server did not record")
    func registerEchoesNoUnrecordedNode() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            var request = Parley_V1_RegisterRequest()
            request.info.userName = "alice"
            request.info.nodeID = TestNodeKey.oneID
            request.info.nodePublicKey = Data(TestNodeKey.one)
            request.info.directAddresses = ["10.0.0.1:7421"]
            request.info.allowDirect = true
            request.password = "pw"
            let answer = try await raw.request(.register, request)
            let user = try answer.decodeMeta(as: Parley_V1_LogonResponse.self).user
            #expect(user.nodeID.isEmpty)
            #expect(user.nodePublicKey.isEmpty)
            #expect(user.directAddresses.isEmpty)
            #expect(!user.allowDirect)
            #expect(user.nodeKeyUpdatedAtMs == 0)
            await raw.close()
        }
    }
}
