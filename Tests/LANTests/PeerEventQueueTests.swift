import ParleyCore
import ParleyDiscovery
import Testing

@Suite("Peer events: coalescing queue and async sequence")
struct PeerEventQueueTests {
    static func peer(_ node: NodeID, status: String? = nil) -> Peer {
        Peer(
            nodeID: node, status: status, addresses: [PeerAddress(host: "10.0.0.1", port: 7000, interface: "eth0")],
            instanceName: "parley \(node)")
    }

    private func drain(_ queue: inout PeerEventQueue) -> [PeerEvent] {
        var events: [PeerEvent] = []
        while let event = queue.pop() { events.append(event) }
        return events
    }

    @Test func keepsOrderAcrossNodes() {
        var queue = PeerEventQueue(limit: 10)
        _ = queue.push(.up(Self.peer("a")))
        _ = queue.push(.up(Self.peer("b")))
        _ = queue.push(.down("c"))
        #expect(drain(&queue) == [.up(Self.peer("a")), .up(Self.peer("b")), .down("c")])
    }

    @Test func upThenChangedIsUpWithTheLatestState() {
        var queue = PeerEventQueue(limit: 10)
        _ = queue.push(.up(Self.peer("a", status: "online")))
        _ = queue.push(.changed(Self.peer("a", status: "away")))
        #expect(drain(&queue) == [.up(Self.peer("a", status: "away"))])
    }

    @Test func upThenDownUnseenVanishes() {
        var queue = PeerEventQueue(limit: 10)
        _ = queue.push(.up(Self.peer("a")))
        _ = queue.push(.up(Self.peer("b")))
        _ = queue.push(.down("a"))
        #expect(drain(&queue) == [.up(Self.peer("b"))])
    }

    @Test func downThenUpOfAKnownPeerIsChanged() {
        var queue = PeerEventQueue(limit: 10)
        _ = queue.push(.down("a"))
        _ = queue.push(.up(Self.peer("a", status: "back")))
        #expect(drain(&queue) == [.changed(Self.peer("a", status: "back"))])
    }

    @Test func changedThenDownIsDown() {
        var queue = PeerEventQueue(limit: 10)
        _ = queue.push(.changed(Self.peer("a", status: "x")))
        _ = queue.push(.down("a"))
        #expect(drain(&queue) == [.down("a")])
    }

    @Test func boundedByDistinctNodesAndRefusesBeyondTheLimit() {
        var queue = PeerEventQueue(limit: 2)
        var accepted = 0
        for index in 0..<1000 where queue.push(.changed(Self.peer("a", status: "\(index)"))) { accepted += 1 }
        #expect(accepted == 1000)
        let acceptedB = queue.push(.up(Self.peer("b")))
        #expect(acceptedB)
        #expect(queue.count == 2)
        let acceptedC = queue.push(.up(Self.peer("c")))
        #expect(!acceptedC)  // a third node is refused
        let mergedB = queue.push(.down("b"))
        #expect(mergedB)  // but a pending node still merges
        #expect(drain(&queue) == [.changed(Self.peer("a", status: "999"))])
    }

    @Test func streamDeliversToAWaitingConsumerAndEndsOnFinish() async {
        let (events, continuation) = PeerEvents.makeStream(bufferLimit: 8)
        async let received: [PeerEvent] = {
            var all: [PeerEvent] = []
            for await event in events { all.append(event) }
            return all
        }()
        continuation.yield(.up(Self.peer("a")))
        continuation.yield(.down("b"))
        continuation.finish()
        #expect(continuation.yield(.up(Self.peer("late"))) == .terminated)
        #expect(await received == [.up(Self.peer("a")), .down("b")])
    }

    @Test func slowConsumerGetsTheMergedLatestState() async {
        let (events, continuation) = PeerEvents.makeStream(bufferLimit: 8)
        for index in 0..<100 {
            continuation.yield(
                index == 0 ? .up(Self.peer("a", status: "0")) : .changed(Self.peer("a", status: "\(index)")))
        }
        continuation.finish()
        var all: [PeerEvent] = []
        for await event in events { all.append(event) }
        #expect(all == [.up(Self.peer("a", status: "99"))])
    }

    @Test func cancellingTheConsumerEndsItsIteration() async {
        let (events, continuation) = PeerEvents.makeStream()
        let consumer = Task {
            var count = 0
            for await _ in events { count += 1 }
            return count
        }
        continuation.yield(.up(Self.peer("a")))
        consumer.cancel()
        let count = await consumer.value
        #expect(count <= 1)
        withExtendedLifetime(continuation) {}
    }
}
