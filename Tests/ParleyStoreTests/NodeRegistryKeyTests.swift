import Foundation
import ParleyCore
import ParleyNodeStore
import ParleyTesting
import Testing

@Suite struct NodeRegistryKeyTests {
    let pinned: [UInt8] = Array("the first key".utf8)
    let presented: [UInt8] = Array("another key".utf8)
    let later = now.addingTimeInterval(60)

    @Test func fingerprintsAreSHA256InBase64() {
        // FIPS 180-4 test vectors, shown the way OpenSSH shows fingerprints.
        #expect(NodeRegistry.fingerprint(of: []) == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")
        #expect(NodeRegistry.fingerprint(of: Array("abc".utf8)) == "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0")
        #expect(
            NodeRegistry.fingerprint(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "SHA256:JI1qYdIGOLjlwCaTDD5gOaM85Flk/yFn9uzt1BnbBsE"
        )
        #expect(
            NodeRegistry.fingerprint(of: [UInt8](repeating: 0x61, count: 1000))
                == "SHA256:Qe3s5C1j6Nm/UVqbppMuHCDLyfWl0TRkWttdsblzfqM"
        )
    }

    @Test func trustOnFirstUseThenMatchThenLoudMismatch() throws {
        try withTemporaryRegistry { (registry, _) throws in
            #expect(try registry.pinnedKey(nodeID: .named("node-a")) == nil)
            #expect(
                try registry.checkKey(nodeID: .named("node-a"), publicKey: pinned, vouchedByServer: false, now: now)
                    == .pinnedNow)
            #expect(
                try registry.pinnedKey(nodeID: .named("node-a"))
                    == NodeRegistry.PinnedKey(
                        nodeID: .named("node-a"),
                        publicKey: pinned,
                        pinnedAt: now.roundedToMilliseconds,
                        isVouchedByServer: false
                    )
            )
            #expect(
                try registry.checkKey(nodeID: .named("node-a"), publicKey: pinned, vouchedByServer: false, now: later)
                    == .matches)

            let error = #expect(throws: ParleyError.self) {
                try registry.checkKey(
                    nodeID: .named("node-a"), publicKey: presented, vouchedByServer: false, now: later)
            }
            #expect(error?.code == .pinnedKeyMismatch)
            #expect(error?.code.wireValue == 60)
            let message = error?.message ?? ""
            #expect(message.hasPrefix("the key of node \(NodeID.named("node-a")) changed: "))
            #expect(message.contains("pinned \(NodeRegistry.fingerprint(of: pinned))"))
            #expect(message.contains("presented \(NodeRegistry.fingerprint(of: presented))"))
            #expect(message.contains("refusing"))
            #expect(message.contains("`parley unpin node \(NodeID.named("node-a"))`"))
            // Refusing changes nothing.
            #expect(try registry.pinnedKey(nodeID: .named("node-a"))?.publicKey == pinned)
            #expect(
                try registry.checkKey(nodeID: .named("node-a"), publicKey: pinned, vouchedByServer: false, now: later)
                    == .matches)
        }
    }

    @Test func aServerVouchedKeyReplacesThePinnedOne() throws {
        try withTemporaryRegistry { (registry, _) throws in
            try registry.checkKey(nodeID: .named("node-a"), publicKey: pinned, vouchedByServer: false, now: now)
            #expect(
                try registry.checkKey(nodeID: .named("node-a"), publicKey: presented, vouchedByServer: true, now: later)
                    == .replacedByServer(previousKey: pinned)
            )
            let pin = try registry.pinnedKey(nodeID: .named("node-a"))
            #expect(pin?.publicKey == presented)
            #expect(pin?.isVouchedByServer == true)
            #expect(pin?.replacedKey == pinned)
            #expect(pin?.replacedAt == later.roundedToMilliseconds)
            // The old key is refused now, while the server cannot vouch.
            let error = #expect(throws: ParleyError.self) {
                try registry.checkKey(nodeID: .named("node-a"), publicKey: pinned, vouchedByServer: false, now: later)
            }
            #expect(error?.code == .pinnedKeyMismatch)
            #expect(
                try registry.checkKey(
                    nodeID: .named("node-a"), publicKey: presented, vouchedByServer: false, now: later)
                    == .matches)
        }
    }

    @Test func serverVouchingForThePinnedKeyIsRemembered() throws {
        try withTemporaryRegistry { (registry, _) throws in
            try registry.checkKey(nodeID: .named("node-a"), publicKey: pinned, vouchedByServer: false, now: now)
            #expect(try registry.pinnedKey(nodeID: .named("node-a"))?.isVouchedByServer == false)
            #expect(
                try registry.checkKey(nodeID: .named("node-a"), publicKey: pinned, vouchedByServer: true, now: later)
                    == .matches)
            #expect(try registry.pinnedKey(nodeID: .named("node-a"))?.isVouchedByServer == true)
            #expect(try registry.pinnedKey(nodeID: .named("node-a"))?.pinnedAt == now.roundedToMilliseconds)
        }
    }

    @Test func unpinningLetsTheNextKeyBePinned() throws {
        try withTemporaryRegistry { (registry, _) throws in
            try registry.checkKey(nodeID: .named("node-a"), publicKey: pinned, vouchedByServer: false, now: now)
            #expect(try registry.unpin(nodeID: .named("node-a")))
            #expect(try registry.unpin(nodeID: .named("node-a")) == false)
            #expect(try registry.pinnedKey(nodeID: .named("node-a")) == nil)
            #expect(
                try registry.checkKey(
                    nodeID: .named("node-a"), publicKey: presented, vouchedByServer: false, now: later)
                    == .pinnedNow)
        }
    }

    @Test func usersArePinnedApartFromNodes() throws {
        try withTemporaryRegistry { (registry, _) throws in
            #expect(
                try registry.checkKey(
                    forUser: 1042, nodeID: .named("node-a"), publicKey: pinned, vouchedByServer: false, now: now)
                    == .pinnedNow
            )
            // Another node claiming user 1042 with its own key: its node pin is new, the user pin refuses it.
            #expect(
                try registry.checkKey(nodeID: .named("node-m"), publicKey: presented, vouchedByServer: false, now: now)
                    == .pinnedNow)
            let error = #expect(throws: ParleyError.self) {
                try registry.checkKey(
                    forUser: 1042, nodeID: .named("node-m"), publicKey: presented, vouchedByServer: false, now: now)
            }
            #expect(error?.code == .pinnedKeyMismatch)
            #expect(error?.message.hasPrefix("user 1042's key changed: node \(NodeID.named("node-m"))") == true)
            #expect(error?.message.contains("`parley unpin user 1042`") == true)
            #expect(try registry.pinnedKey(forUser: 1042)?.nodeID == .named("node-a"))

            // The user moved, and the server says so.
            #expect(
                try registry.checkKey(
                    forUser: 1042, nodeID: .named("node-b"), publicKey: presented, vouchedByServer: true, now: later)
                    == .replacedByServer(previousKey: pinned)
            )
            #expect(try registry.pinnedKey(forUser: 1042)?.nodeID == .named("node-b"))
            #expect(try registry.unpin(user: 1042))
            #expect(try registry.pinnedKey(forUser: 1042) == nil)
        }
    }

    @Test func theUnpinCommandIsConfigurable() throws {
        try withRegistryDirectory { (directory) throws in
            let registry = try NodeRegistry(
                dataDirectory: directory,
                configuration: .init(unpinCommand: "myapp keys forget")
            )
            try registry.checkKey(nodeID: .named("n"), publicKey: pinned, vouchedByServer: false, now: now)
            let error = #expect(throws: ParleyError.self) {
                try registry.checkKey(nodeID: .named("n"), publicKey: presented, vouchedByServer: false, now: now)
            }
            #expect(
                error?.message.hasSuffix(
                    "(if this is expected, unpin it with `myapp keys forget node \(NodeID.named("n"))`)")
                    == true)
        }
    }
}
