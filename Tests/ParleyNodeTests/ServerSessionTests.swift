import ParleyCore
import Testing

@testable import ParleyNode

@Suite struct ServerSessionTests {
    private final class FakeClient: Sendable {}

    private typealias Session = ServerSession<FakeClient>

    private let alice = UserID(7)
    private let bob = UserID(8)
    private let start = ContinuousClock.now

    private func lanPeer(_ user: UserID, status: String = "away: at lunch", online: Bool = true) -> ParleyNode.PeerInfo
    {
        ParleyNode.PeerInfo(
            nodeID: ParleyNode.NodeID(subjectPublicKeyInfo: [UInt8(truncatingIfNeeded: user.rawValue)]),
            userID: user,
            name: "peer",
            addresses: ["192.0.2.1:4000"],
            status: status,
            linked: false,
            online: online
        )
    }

    /// The reports among `actions`, as (user, state, source).
    private func reports(_ actions: [Session.Action]) -> [String] {
        actions.compactMap { action in
            guard case .report(let user, let presence) = action else { return nil }
            return "\(user) \(presence.state.rawValue) \(presence.source.rawValue)"
        }
    }

    private func node(_ key: UInt8, online: Bool = true, allows: Bool = true, at: ContinuousClock.Instant)
        -> ParleyNode.ServerNode
    {
        ParleyNode.ServerNode(
            nodeID: ParleyNode.NodeID(subjectPublicKeyInfo: [key]),
            publicKey: [key],
            addresses: ["198.51.100.\(key):4000"],
            allowsDirectLinks: allows,
            isOnline: online,
            fetchedAt: at
        )
    }

    @Test func aLogonFlushesTheOutboxAndSetsTheChosenPresence() {
        var session = Session()
        let client = FakeClient()
        session.clientStarted(client)
        session.chose(Presence(state: .busy, text: "writing"))
        #expect(session.loggedOnClient == nil)
        let connected = session.connectionChanged(loggedOn: false, kicked: false, lanPeers: [])
        #expect(connected.isEmpty)
        let actions = session.connectionChanged(loggedOn: true, kicked: false, lanPeers: [])
        #expect(session.loggedOnClient === client)
        guard actions.count == 2, case .flushOutbox = actions[0], case .setPresence(let to, let presence) = actions[1]
        else {
            Issue.record("unexpected actions after logon: \(actions)")
            return
        }
        #expect(to === client)
        #expect(presence.state == .busy)
        #expect(presence.text == "writing")
    }

    @Test func aLogonWithoutAChosenPresenceOnlyFlushes() {
        var session = Session()
        session.clientStarted(FakeClient())
        let actions = session.connectionChanged(loggedOn: true, kicked: false, lanPeers: [])
        #expect(actions.count == 1)
        if case .flushOutbox = actions.first {} else { Issue.record("no flush after logon: \(actions)") }
    }

    @Test func aKickIsRemembered() {
        var session = Session()
        session.clientStarted(FakeClient())
        _ = session.connectionChanged(loggedOn: true, kicked: false, lanPeers: [])
        _ = session.connectionChanged(loggedOn: false, kicked: true, lanPeers: [])
        #expect(session.kicked)
        #expect(session.loggedOnClient == nil)
        _ = session.connectionChanged(loggedOn: false, kicked: false, lanPeers: [])
        #expect(session.kicked)
        session.clientStopped()
        #expect(session.client == nil)
    }

    @Test func presenceComesFromTheLANUntilTheServerSnapshot() {
        var session = Session()
        session.loadCachedContacts([alice, bob])
        // The LAN first: alice's node advertises "away", bob has none.
        let lan = [lanPeer(alice)]
        #expect(reports(session.reportChanges(lanPeers: lan)) == ["\(alice) away lan", "\(bob) offline lan"])
        #expect(session.contactPresences(lanPeers: lan)[alice]?.source == .lan)
        session.clientStarted(FakeClient())
        // Logged on, but no snapshot yet: still the LAN, nothing changed.
        #expect(reports(session.connectionChanged(loggedOn: true, kicked: false, lanPeers: lan)).isEmpty)
        let snapshot = session.presenceReceived(
            contacts: [alice, bob],
            presences: [alice: Presence(state: .online)],
            isSnapshot: true,
            lanPeers: lan
        )
        #expect(reports(snapshot) == ["\(alice) online server", "\(bob) offline server"])
        // The same presence again is not reported; a change is.
        let same = session.presenceReceived(
            contacts: nil, presences: [alice: Presence(state: .online)], isSnapshot: false, lanPeers: lan)
        #expect(reports(same).isEmpty)
        let change = session.presenceReceived(
            contacts: nil, presences: [bob: Presence(state: .away)], isSnapshot: false, lanPeers: lan)
        #expect(reports(change) == ["\(bob) away server"])
        // The server session ends: the LAN answers again.
        let away = session.connectionChanged(loggedOn: false, kicked: false, lanPeers: lan)
        #expect(reports(away) == ["\(alice) away lan", "\(bob) offline lan"])
    }

    @Test func theFirstReportNamesEveryCachedContact() {
        var session = Session()
        session.loadCachedContacts([alice, bob])
        let first = reports(session.reportChanges(lanPeers: [lanPeer(alice)]))
        #expect(first == ["\(alice) away lan", "\(bob) offline lan"])
        #expect(reports(session.reportChanges(lanPeers: [lanPeer(alice)])).isEmpty)
        // alice's node goes offline on the LAN.
        #expect(reports(session.reportChanges(lanPeers: [lanPeer(alice, online: false)])) == ["\(alice) offline lan"])
    }

    @Test func contactListChangesAreReported() {
        var session = Session()
        session.loadCachedContacts([alice])
        _ = session.reportChanges(lanPeers: [])
        #expect(reports(session.contactAdded(bob, lanPeers: [])) == ["\(bob) offline lan"])
        _ = session.contactRemoved(bob, lanPeers: [])
        #expect(session.contacts == [alice])
        #expect(session.contactPresences(lanPeers: []).keys.sorted() == [alice])
        _ = session.contactsReplaced([bob], lanPeers: [])
        #expect(session.contacts == [bob])
    }

    @Test func theServerIsAskedAboutANodeAtMostEvery30Seconds() {
        var session = Session()
        let client = FakeClient()
        session.clientStarted(client)
        #expect(session.clientToAsk(about: alice, force: false, now: start) == nil)
        _ = session.connectionChanged(loggedOn: true, kicked: false, lanPeers: [])
        #expect(session.clientToAsk(about: alice, force: false, now: start) === client)
        session.learned(node(1, at: start), of: alice)
        #expect(session.clientToAsk(about: alice, force: false, now: start + .seconds(29)) == nil)
        #expect(session.clientToAsk(about: alice, force: true, now: start + .seconds(29)) === client)
        #expect(session.clientToAsk(about: alice, force: false, now: start + .seconds(30)) === client)
    }

    @Test func serverAddressesOnlyForOnlineNodesThatAllowLinks() {
        var session = Session()
        let online = node(1, at: start)
        session.learned(online, of: alice)
        session.learned(node(2, online: false, at: start), of: bob)
        #expect(session.addresses(of: online.nodeID) == ["198.51.100.1:4000"])
        #expect(session.addresses(of: ParleyNode.NodeID(subjectPublicKeyInfo: [2])).isEmpty)
        session.learned(node(1, allows: false, at: start), of: alice)
        #expect(session.addresses(of: online.nodeID).isEmpty)
    }
}
