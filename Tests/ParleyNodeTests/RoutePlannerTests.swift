import ParleyCore
import ParleyDiscovery
import Testing

@testable import ParleyNode

@Suite struct RoutePlannerTests {
    private func situation(
        node: Bool = false,
        queued: Bool = false,
        direct: RouteSituation.Direct = .unavailable,
        allowed: Bool = true,
        server: Bool = false
    ) -> RouteSituation {
        RouteSituation(
            recipientIsNode: node,
            hasQueuedMessages: queued,
            direct: direct,
            directAllowed: allowed,
            serverLoggedOn: server
        )
    }

    @Test func directFirstThenServerThenOutbox() {
        #expect(RoutePlanner.plan(situation(direct: .linked, server: true)) == [.direct, .server, .queued])
        #expect(RoutePlanner.plan(situation(direct: .dialable, server: false)) == [.direct, .queued])
        #expect(RoutePlanner.plan(situation(direct: .unavailable, server: true)) == [.server, .queued])
        #expect(RoutePlanner.plan(situation()) == [.queued])
    }

    @Test func forbiddenDirectLinksGoThroughTheServer() {
        #expect(RoutePlanner.plan(situation(direct: .linked, allowed: false, server: true)) == [.server, .queued])
    }

    @Test func queuedMessagesAreNotOvertaken() {
        #expect(RoutePlanner.plan(situation(queued: true, direct: .linked, server: true)) == [.queued])
        #expect(RoutePlanner.planFlush(situation(queued: true, direct: .linked, server: true)) == [.direct, .server])
    }

    @Test func nodeRecipientsNeverUseTheServer() {
        #expect(RoutePlanner.plan(situation(node: true, direct: .dialable, server: true)) == [.direct, .queued])
        #expect(RoutePlanner.plan(situation(node: true, server: true)) == [.queued])
        #expect(RoutePlanner.planFlush(situation(node: true, server: true)) == [])
    }
}

@Suite struct RouteMemoryTests {
    @Test func onlyChangesOfRouteAreReported() {
        var memory = RouteMemory()
        let alice = ParleyNode.Recipient.user(UserID(7))
        let node = ParleyNode.Recipient.node(ParleyNode.NodeID(subjectPublicKeyInfo: [1]))
        let steps: [(ParleyNode.Route, ParleyNode.Recipient)] = [
            (.server, alice), (.server, alice), (.server, node), (.direct, alice), (.queued, alice), (.queued, alice),
        ]
        let reported = steps.map { memory.note($0.0, for: $0.1) }
        // A repeat is not reported; each recipient has its own last route.
        #expect(reported == [true, false, true, true, true, false])
    }
}

@Suite struct OutboxOutcomeTests {
    @Test func theRecordedTextIsTheRouteOrTheFailure() {
        #expect(OutboxOutcome(.direct)?.description == ParleyNode.Route.direct.rawValue)
        #expect(OutboxOutcome(.server)?.description == ParleyNode.Route.server.rawValue)
        #expect(OutboxOutcome(.queued) == nil)
        // The text the outbox recorded before the outcome was a type.
        #expect(OutboxOutcome.failed(.recipientNotFound).description == "failed: recipient-not-found")
    }
}

@Suite struct PeerDirectoryTests {
    private let a = ParleyNode.NodeID(subjectPublicKeyInfo: [1])
    private func peer(_ id: ParleyNode.NodeID, user: UInt32? = 7) -> Peer {
        Peer(
            nodeID: id,
            userID: user,
            userName: "ann",
            status: "online",
            addresses: [PeerAddress(host: "127.0.0.1", port: 9, interface: "lo")],
            instanceName: "ann"
        )
    }

    @Test func discoveryAloneAnnouncesAndWithdraws() {
        var directory = PeerDirectory()
        let up = directory.advertised(peer(a), as: a, isNew: true)
        #expect(up.count == 1)
        guard case .peerUp(let info) = up.first else {
            Issue.record("unexpected events")
            return
        }
        #expect(info.online && !info.linked && info.userID == 7 && info.addresses == ["127.0.0.1:9"])
        #expect(directory.node(ofUser: 7) == a)
        #expect(directory.withdrawn(a) == [.peerDown(a)])
        #expect(directory.peers.isEmpty)
    }

    @Test func aDeadLinkWinsOverLingeringDiscovery() {
        var directory = PeerDirectory()
        _ = directory.advertised(peer(a), as: a, isNew: true)
        let linked = directory.linkUp(a, user: 7, name: "ann")
        guard case .peerChanged(let info) = linked.first else {
            Issue.record("unexpected events")
            return
        }
        #expect(info.linked)
        let down = directory.linkDown(a)
        #expect(down.lastLink)
        #expect(directory.redialFailed(a) == [.peerDown(a)])
        #expect(directory.peers.first?.online == false)
        #expect(directory.node(ofUser: 7) == nil)
        // mDNS repeating the same record is no sign of life; a new link is.
        #expect(directory.advertised(peer(a), as: a, isNew: false).isEmpty)
        guard case .peerUp = directory.linkUp(a, user: 7, name: "ann").first else {
            Issue.record("unexpected events")
            return
        }
    }

    @Test func withdrawnWhileLinkedStaysUp() {
        var directory = PeerDirectory()
        _ = directory.linkUp(a, user: nil, name: "")
        let events = directory.withdrawn(a)
        #expect(!events.contains(.peerDown(a)))
        #expect(directory.peers.first?.online == true)
    }
}
