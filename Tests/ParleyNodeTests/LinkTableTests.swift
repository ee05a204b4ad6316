import ParleyCore
import Testing

@testable import ParleyNode

@Suite struct LinkTableTests {
    private final class FakeLink: TableLink {
        let isOpen: Bool
        init(isOpen: Bool = true) { self.isOpen = isOpen }
    }

    private let peer = ParleyNode.NodeID(subjectPublicKeyInfo: [1])
    private let other = ParleyNode.NodeID(subjectPublicKeyInfo: [2])
    private let start = ContinuousClock.now

    private func running() -> LinkTable<FakeLink> {
        var table = LinkTable<FakeLink>(dialBackoff: Backoff(initial: .seconds(1), maximum: .seconds(30)))
        table.start()
        return table
    }

    private func isDial(_ decision: LinkTable<FakeLink>.DialDecision) -> Bool {
        if case .dial = decision { true } else { false }
    }

    /// For a `.wait`, whether a background probe was asked for; nil for any other decision.
    private func probe(_ decision: LinkTable<FakeLink>.DialDecision) -> Bool? {
        if case .wait(let probe) = decision { probe } else { nil }
    }

    @Test func linksAreAdmittedOnlyWhileServing() {
        var table = LinkTable<FakeLink>(dialBackoff: Backoff(initial: .seconds(1), maximum: .seconds(30)))
        let early = FakeLink()
        let admitted1 = table.admit(early)
        #expect(!admitted1)
        table.start()
        let (a, b) = (FakeLink(), FakeLink())
        let admitted2 = table.admit(a)
        #expect(admitted2)
        let admitted3 = table.admit(b)
        #expect(admitted3)
        table.stop()
        let admitted4 = table.admit(FakeLink())
        #expect(!admitted4)
        // What the node closes at shutdown: every admitted link, ready or not.
        #expect(Set(table.everyLink.map(ObjectIdentifier.init)) == [ObjectIdentifier(a), ObjectIdentifier(b)])
    }

    @Test func anOpenReadyLinkIsUsedInsteadOfADial() {
        var table = running()
        let closed = FakeLink(isOpen: false)
        let admitted5 = table.admit(closed)
        #expect(admitted5)
        table.linkReady(closed, peer: peer)
        #expect(isDial(table.decideDial(to: peer, purpose: .background, hasAddresses: true, now: start)))
        let open = FakeLink()
        let admitted6 = table.admit(open)
        #expect(admitted6)
        table.linkReady(open, peer: peer)
        guard case .use(let used) = table.decideDial(to: peer, purpose: .background, hasAddresses: true, now: start)
        else {
            Issue.record("an open link was not used")
            return
        }
        #expect(used === open)
    }

    @Test func onlyTheLastReadyLinkClosingAsksForARedial() {
        var table = running()
        let (first, second, unready) = (FakeLink(), FakeLink(), FakeLink())
        for link in [first, second, unready] {
            let admitted = table.admit(link)
            #expect(admitted)
        }
        table.linkReady(first, peer: peer)
        table.linkReady(second, peer: peer)
        let redial7 = table.linkClosed(unready, peer: nil)
        #expect(!redial7)
        let redial8 = table.linkClosed(first, peer: peer)
        #expect(!redial8)
        #expect(table.isLinked(peer))
        let redial9 = table.linkClosed(second, peer: peer)
        #expect(redial9)
        #expect(!table.isLinked(peer))
        #expect(table.everyLink.isEmpty)
    }

    @Test func noRedialWhileStopping() {
        var table = running()
        let link = FakeLink()
        let admitted10 = table.admit(link)
        #expect(admitted10)
        table.linkReady(link, peer: peer)
        table.stop()
        let redial11 = table.linkClosed(link, peer: peer)
        #expect(!redial11)
    }

    @Test func refusalsHoldOffDialsUntilTheirTime() {
        var table = running()
        let reason = ParleyError(code: .pinnedKeyMismatch, message: "another key")
        let first = table.refused(peer, reason, byPeer: true, now: start, randomFactor: 1)
        #expect(first.count == 1)
        #expect(first.delay == .seconds(5))
        guard
            case .refused(let refusal) = table.decideDial(
                to: peer, purpose: .sendWithoutAlternative, hasAddresses: true, now: start + .seconds(4))
        else {
            Issue.record("a refused peer was dialled before its backoff")
            return
        }
        #expect(refusal.reason.code == .pinnedKeyMismatch)
        #expect(isDial(table.decideDial(to: peer, purpose: .background, hasAddresses: true, now: start + .seconds(5))))
        // A second refusal waits twice as long.
        let second = table.refused(peer, reason, byPeer: true, now: start, randomFactor: 1)
        #expect(second.count == 2)
        #expect(second.delay == .seconds(10))
        // The peer took a message: the refusal is settled.
        table.delivered(to: peer)
        #expect(isDial(table.decideDial(to: peer, purpose: .background, hasAddresses: true, now: start)))
    }

    @Test func forgettingOwnRefusalsKeepsThePeersRefusals() {
        var table = running()
        let reason = ParleyError(code: .pinnedKeyMismatch, message: "another key")
        _ = table.refused(peer, reason, byPeer: false, now: start)
        _ = table.refused(other, reason, byPeer: true, now: start)
        _ = table.dialFailed(other, now: start)
        table.forgetOwnRefusals()
        #expect(isDial(table.decideDial(to: peer, purpose: .background, hasAddresses: true, now: start)))
        #expect(table.refusals[other]?.byPeer == true)
        #expect(table.refusals[peer] == nil)
        #expect(!table.dials.isBackingOff(other))
    }

    @Test func aFailedPeerIsProbedInTheBackgroundOnceItsBackoffExpires() {
        var table = running()
        #expect(table.dialFailed(peer, now: start, randomFactor: 1) == .seconds(1))
        // Within the backoff nobody dials; a send with no other route still tries.
        let withinBackoff = table.decideDial(to: peer, purpose: .sendWithAlternative, hasAddresses: true, now: start)
        #expect(probe(withinBackoff) == false, "a failed peer was dialled on the send path")
        #expect(isDial(table.decideDial(to: peer, purpose: .sendWithoutAlternative, hasAddresses: true, now: start)))
        // Once it expires, a send with another route asks for one background dial, once.
        let later = start + .seconds(2)
        let expired = table.decideDial(to: peer, purpose: .sendWithAlternative, hasAddresses: true, now: later)
        #expect(probe(expired) == true, "no background probe once the backoff expired")
        #expect(table.pendingDials == [peer])
        let again = table.decideDial(to: peer, purpose: .sendWithAlternative, hasAddresses: true, now: later)
        #expect(probe(again) == false, "a second probe was asked for")
        #expect(table.takePendingDials() == [peer])
        #expect(table.pendingDials.isEmpty)
    }

    @Test func aReadyLinkOrDiscoveryForgetsFailedDials() {
        var table = running()
        _ = table.dialFailed(peer, now: start)
        _ = table.dialFailed(other, now: start)
        let link = FakeLink()
        let admitted12 = table.admit(link)
        #expect(admitted12)
        table.linkReady(link, peer: peer)
        table.discovered(other, openLink: false)
        #expect(!table.dials.isBackingOff(peer))
        #expect(!table.dials.isBackingOff(other))
    }

    @Test func failedDialsAreNotHeldAgainstPeersOnceStopping() {
        var table = running()
        table.stop()
        #expect(table.dialFailed(peer, now: start) == nil)
        #expect(!table.dials.isBackingOff(peer))
    }

    @Test func pendingDialsSkipLinkedPeers() {
        var table = running()
        table.discovered(peer, openLink: true)
        table.discovered(other, openLink: true)
        table.discovered(ParleyNode.NodeID(subjectPublicKeyInfo: [3]), openLink: false)
        let link = FakeLink()
        let admitted13 = table.admit(link)
        #expect(admitted13)
        table.linkReady(link, peer: peer)
        #expect(table.takePendingDials() == [other])
        #expect(table.takePendingDials().isEmpty)
    }

    @Test func aPeerWithoutAddressesIsNotBackedOff() {
        var table = running()
        _ = table.dialFailed(peer, now: start)
        #expect(isDial(table.decideDial(to: peer, purpose: .sendWithAlternative, hasAddresses: false, now: start)))
    }
}
