import ParleyDiscovery
import Testing

@testable import ParleyAvahi

@Suite("Peer table: merging instances by node ID")
struct PeerTableTests {
    private typealias Key = PeerTable.InstanceKey

    private func key(_ name: String, interface: Int32 = 2, ipv6: Bool = false) -> Key {
        Key(interfaceIndex: interface, isIPv6: ipv6, name: name, domain: "local")
    }

    private func address(_ host: String, _ interface: String = "eth0", port: UInt16 = 7000) -> PeerAddress {
        PeerAddress(host: host, port: port, interface: interface)
    }

    @Test func oneNodeOverIPv4AndIPv6AndTwoInterfacesIsOnePeer() throws {
        var table = PeerTable(ownNodeID: "me", maximumPeers: 10)
        let record = TXTRecord(nodeID: "n1", userID: 5, status: "online")
        let first = table.resolved(key("node one"), record: record, address: address("10.0.0.1"))
        guard case .up(let up) = try #require(first.first) else {
            Issue.record("expected up")
            return
        }
        #expect(up.addresses == [address("10.0.0.1")])

        let second = table.resolved(key("node one", ipv6: true), record: record, address: address("fe80::1%eth0"))
        let third = table.resolved(
            key("node one", interface: 3), record: record, address: address("192.168.5.1", "wlan0"))
        #expect(second.count == 1 && third.count == 1)
        guard case .changed(let merged) = try #require(third.first) else {
            Issue.record("expected changed")
            return
        }
        #expect(merged.addresses == [address("10.0.0.1"), address("fe80::1%eth0"), address("192.168.5.1", "wlan0")])
        #expect(table.peerCount == 1)

        // re-resolving the same data says nothing
        let result1 = table.resolved(key("node one"), record: record, address: address("10.0.0.1"))
        #expect(result1.isEmpty)

        // the peer stays up until its last instance goes
        let result2 = table.removed(key("node one", interface: 3))
        #expect(result2.count == 1)
        let result3 = table.removed(key("node one", ipv6: true))
        #expect(result3.count == 1)
        let result4 = table.removed(key("node one"))
        #expect(result4 == [.down("n1")])
        let result5 = table.removed(key("node one"))
        #expect(result5.isEmpty)
    }

    @Test func identityIsTheNodeIDNotTheInstanceName() {
        var table = PeerTable(ownNodeID: "me", maximumPeers: 10)
        // two nodes that wanted the same name; the second was renamed by Avahi
        let a = table.resolved(key("parley"), record: TXTRecord(nodeID: "a"), address: address("10.0.0.1"))
        let b = table.resolved(key("parley #2"), record: TXTRecord(nodeID: "b"), address: address("10.0.0.2"))
        #expect(a.map(\.nodeID) == ["a"] && b.map(\.nodeID) == ["b"])
        // one node seen under its old and its new name is still one peer
        let renamed = table.resolved(key("parley #3"), record: TXTRecord(nodeID: "a"), address: address("10.0.0.1"))
        #expect(renamed.count == 1)
        #expect(table.peer("a")?.instanceName == "parley #3")
        #expect(table.peerCount == 2)
    }

    @Test func anInstanceNameTakenOverByAnotherNodeMovesIt() {
        var table = PeerTable(ownNodeID: "me", maximumPeers: 10)
        _ = table.resolved(key("x"), record: TXTRecord(nodeID: "a"), address: address("10.0.0.1"))
        let events = table.resolved(key("x"), record: TXTRecord(nodeID: "b"), address: address("10.0.0.2"))
        #expect(events.count == 2)
        #expect(events.first == .down("a"))
        #expect(events.last?.nodeID == "b")
    }

    @Test func newestInstanceSuppliesTheFields() {
        var table = PeerTable(ownNodeID: "me", maximumPeers: 10)
        _ = table.resolved(key("x"), record: TXTRecord(nodeID: "a", status: "online"), address: address("10.0.0.1"))
        _ = table.resolved(
            key("x", ipv6: true), record: TXTRecord(nodeID: "a", status: "online"), address: address("fd00::1"))
        let events = table.resolved(
            key("x"), record: TXTRecord(nodeID: "a", status: "away"), address: address("10.0.0.1"))
        guard case .changed(let peer) = events.first else {
            Issue.record("expected changed")
            return
        }
        #expect(peer.status == "away")
        #expect(peer.addresses.count == 2)
    }

    @Test func ownNodeIsNeverReported() {
        var table = PeerTable(ownNodeID: "me", maximumPeers: 10)
        let result6 = table.resolved(key("mine"), record: TXTRecord(nodeID: "me"), address: address("10.0.0.9"))
        #expect(result6.isEmpty)
        #expect(table.peerCount == 0)
        // a name that belonged to a peer and is now ours: the peer goes
        _ = table.resolved(key("n"), record: TXTRecord(nodeID: "p"), address: address("10.0.0.2"))
        let result7 = table.resolved(key("n"), record: TXTRecord(nodeID: "me"), address: address("10.0.0.9"))
        #expect(result7 == [.down("p")])
    }

    @Test func stalePeersAreSweptUnlessConfirmed() {
        var table = PeerTable(ownNodeID: "me", maximumPeers: 10)
        _ = table.resolved(key("a"), record: TXTRecord(nodeID: "a"), address: address("10.0.0.1"))
        _ = table.resolved(key("b"), record: TXTRecord(nodeID: "b"), address: address("10.0.0.2"))
        table.markAllStale()
        table.confirm(key("a"))
        let result8 = table.sweepStale()
        #expect(result8 == [.down("b")])
        let result9 = table.sweepStale()
        #expect(result9.isEmpty)
        #expect(table.peerCount == 1)
    }

    @Test func refusesPeersBeyondTheLimit() {
        var table = PeerTable(ownNodeID: "me", maximumPeers: 2)
        _ = table.resolved(key("a"), record: TXTRecord(nodeID: "a"), address: address("10.0.0.1"))
        _ = table.resolved(key("b"), record: TXTRecord(nodeID: "b"), address: address("10.0.0.2"))
        let result10 = table.resolved(key("c"), record: TXTRecord(nodeID: "c"), address: address("10.0.0.3"))
        #expect(result10.isEmpty)
        #expect(table.refusedCount == 1)
        // known peers still merge more instances
        let merged = table.resolved(key("a", ipv6: true), record: TXTRecord(nodeID: "a"), address: address("fd00::1"))
        #expect(merged.count == 1)
    }

    @Test func removeAllTakesEveryPeerDown() {
        var table = PeerTable(ownNodeID: "me", maximumPeers: 10)
        _ = table.resolved(key("a"), record: TXTRecord(nodeID: "a"), address: address("10.0.0.1"))
        _ = table.resolved(key("b"), record: TXTRecord(nodeID: "b"), address: address("10.0.0.2"))
        let result11 = table.removeAll()
        #expect(result11 == [.down("a"), .down("b")])
        #expect(table.instanceCount == 0)
    }

    @Test(arguments: [
        ("fe80::1", "eth0", "fe80::1%eth0"),
        ("FE80::A:B", "eth1", "FE80::A:B%eth1"),
        ("febf:0:0:0:1::2", "eth0", "febf:0:0:0:1::2%eth0"),
        ("fe80::1%eth0", "eth0", "fe80::1%eth0"),  // already scoped
        ("fec0::1", "eth0", "fec0::1"),  // site-local, not link-local
        ("fe8::1", "eth0", "fe8::1"),  // 0fe8, not link-local
        ("fd70::1", "eth0", "fd70::1"),
        ("10.0.0.1", "eth0", "10.0.0.1"),
        ("fe80::1", "", "fe80::1"),
    ])
    func linkLocalAddressesKeepTheirScope(host: String, interface: String, expected: String) {
        #expect(AvahiConversions.scoped(host: host, interface: interface) == expected)
    }

    @Test func durationsBecomeMilliseconds() {
        #expect(AvahiConversions.milliseconds(.seconds(2)) == 2000)
        #expect(AvahiConversions.milliseconds(.milliseconds(1500)) == 1500)
        #expect(AvahiConversions.milliseconds(.zero) == 0)
        #expect(AvahiConversions.milliseconds(.seconds(-1)) == 0)
        #expect(AvahiConversions.milliseconds(.seconds(Int64.max)) == UInt32.max)
    }
}
