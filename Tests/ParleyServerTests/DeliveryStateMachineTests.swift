import ParleyCore
import Testing

@testable import ParleyServer

@Suite("DeliveryStateMachine")
struct DeliveryStateMachineTests {
    typealias Key = DeliveryStateMachine.Key

    static func key(_ n: Int64) -> Key { Key(sender: UserID(7), messageID: MessageID(UInt64(n))) }
    static func loaded(_ sequences: ClosedRange<Int64>) -> [(sequence: Int64, key: Key)] {
        sequences.map { (sequence: $0, key: key($0)) }
    }

    @Test("logging on loads the backlog")
    func startLoads() {
        var machine = DeliveryStateMachine(window: 8)
        #expect(machine.start() == .load(after: 0, limit: 8))
        #expect(machine.loading)
        // Nothing else starts a second load meanwhile.
        #expect(machine.writabilityChanged(true) == .none)
    }

    @Test("a short load pushes everything and ends the backlog")
    func shortLoadEndsBacklog() {
        var machine = DeliveryStateMachine(window: 8)
        _ = machine.start()
        let (push, next) = machine.loaded(Self.loaded(1...3), limit: 8)
        #expect(push == [1, 2, 3])
        #expect(next == .none)
        #expect(!machine.backlog)
        #expect(!machine.loading)
        #expect(machine.lastPushedSequence == 3)
        #expect(machine.inFlight.count == 3)
    }

    @Test("a full load asks for more")
    func fullLoadContinues() {
        var machine = DeliveryStateMachine(window: 8)
        _ = machine.start()
        let (push, next) = machine.loaded(Self.loaded(1...2), limit: 2)
        #expect(push == [1, 2])
        #expect(machine.backlog)
        #expect(next == .load(after: 2, limit: 6))
    }

    @Test("live messages are pushed while there is room")
    func livePushWithRoom() {
        var machine = DeliveryStateMachine(window: 4)
        _ = machine.start()
        _ = machine.loaded([], limit: 4)
        #expect(machine.liveMessage(sequence: 10, key: Self.key(10)) == .push(10))
        #expect(machine.liveMessage(sequence: 11, key: Self.key(11)) == .push(11))
        #expect(machine.lastPushedSequence == 11)
        #expect(machine.inFlight.count == 2)
    }

    @Test("a full window turns live messages into backlog, loaded once acknowledgements free half of it")
    func fullWindowFallsBackToLoading() {
        var machine = DeliveryStateMachine(window: 4)
        _ = machine.start()
        _ = machine.loaded([], limit: 4)
        for sequence in Int64(1)...4 {
            #expect(machine.liveMessage(sequence: sequence, key: Self.key(sequence)) == .push(sequence))
        }
        // The fifth finds the window full.
        #expect(machine.liveMessage(sequence: 5, key: Self.key(5)) == .none)
        #expect(machine.backlog)
        #expect(machine.liveMessage(sequence: 6, key: Self.key(6)) == .none)

        // One acknowledgement is not enough: 3 in flight > 4 / 2.
        let first = machine.acknowledged([Self.key(1)])
        #expect(first.acknowledged == [Self.key(1)])
        #expect(first.next == .none)
        // The second frees half the window: load what was missed.
        let second = machine.acknowledged([Self.key(2), Self.key(99)])
        #expect(second.acknowledged == [Self.key(2)])
        #expect(second.next == .load(after: 4, limit: 2))

        let (push, next) = machine.loaded(Self.loaded(5...6), limit: 2)
        #expect(push == [5, 6])
        // The load was full, so there may be more.
        #expect(next == .none)
        #expect(machine.backlog)
        #expect(machine.inFlight.count == 4)
        let after = machine.acknowledged([Self.key(3), Self.key(4)])
        #expect(after.next == .load(after: 6, limit: 2))
        let (rest, done) = machine.loaded([], limit: 2)
        #expect(rest.isEmpty)
        #expect(done == .none)
        #expect(!machine.backlog)
        #expect(machine.liveMessage(sequence: 7, key: Self.key(7)) == .push(7))
    }

    @Test("a live message during a load triggers another load")
    func liveDuringLoadReloads() {
        var machine = DeliveryStateMachine(window: 8)
        #expect(machine.start() == .load(after: 0, limit: 8))
        // Committed after the load read its snapshot.
        #expect(machine.liveMessage(sequence: 4, key: Self.key(4)) == .none)
        let (push, next) = machine.loaded(Self.loaded(1...3), limit: 8)
        #expect(push == [1, 2, 3])
        #expect(next == .load(after: 3, limit: 5))
        let (more, done) = machine.loaded(Self.loaded(4...4), limit: 5)
        #expect(more == [4])
        #expect(done == .none)
        #expect(!machine.backlog)
    }

    @Test("a live message already pushed by a load is ignored")
    func staleLiveIgnored() {
        var machine = DeliveryStateMachine(window: 8)
        _ = machine.start()
        _ = machine.loaded(Self.loaded(1...5), limit: 8)
        #expect(machine.liveMessage(sequence: 5, key: Self.key(5)) == .none)
        #expect(machine.liveMessage(sequence: 2, key: Self.key(2)) == .none)
        #expect(machine.inFlight.count == 5)
        #expect(machine.liveMessage(sequence: 6, key: Self.key(6)) == .push(6))
    }

    @Test("an unwritable connection stops pushes; writable again resumes with a load")
    func writability() {
        var machine = DeliveryStateMachine(window: 8)
        _ = machine.start()
        _ = machine.loaded([], limit: 8)
        #expect(machine.writabilityChanged(false) == .none)
        #expect(machine.liveMessage(sequence: 1, key: Self.key(1)) == .none)
        #expect(machine.backlog)
        #expect(machine.acknowledged([]).next == .none)
        #expect(machine.writabilityChanged(true) == .load(after: 0, limit: 8))
        let (push, _) = machine.loaded(Self.loaded(1...1), limit: 8)
        #expect(push == [1])
    }

    @Test("a load that comes back while unwritable pushes nothing and is repeated later")
    func loadWhileUnwritable() {
        var machine = DeliveryStateMachine(window: 8)
        _ = machine.start()
        _ = machine.writabilityChanged(false)
        let (push, next) = machine.loaded(Self.loaded(1...2), limit: 8)
        #expect(push.isEmpty)
        #expect(next == .none)
        #expect(machine.backlog)
        #expect(machine.writabilityChanged(true) == .load(after: 0, limit: 8))
    }

    @Test("a failed load is retried at the next trigger")
    func failedLoad() {
        var machine = DeliveryStateMachine(window: 8)
        _ = machine.start()
        machine.loadFailed()
        #expect(!machine.loading)
        #expect(machine.backlog)
        #expect(machine.liveMessage(sequence: 3, key: Self.key(3)) == .load(after: 0, limit: 8))
    }

    @Test("a window below 1 is treated as 1")
    func minimumWindow() {
        var machine = DeliveryStateMachine(window: 0)
        #expect(machine.window == 1)
        #expect(machine.start() == .load(after: 0, limit: 1))
    }

    @Test("the messages in flight: a copy is independent, message ID 0 is kept, an unknown key is not removed")
    func inFlightMessages() {
        func key(_ sender: UInt32, _ id: UInt64) -> Key {
            Key(sender: UserID(rawValue: sender), messageID: MessageID(id))
        }
        var first = InFlightMessages()
        var removals: [Bool] = []
        removals.append(first.remove(key(7, 1)))
        for id in UInt64(0)..<300 { first.insert(key(7, id), sequence: Int64(id) + 1) }
        var second = first
        for (sender, id) in [(7, 0), (7, 299), (8, 1)] as [(UInt32, UInt64)] {
            removals.append(second.remove(key(sender, id)))
        }
        let countsAfterSecond = (first.count, second.count)
        for _ in 0..<2 { removals.append(first.remove(key(7, 299))) }
        #expect(removals == [false, true, true, false, true, false])
        #expect(countsAfterSecond == (300, 298))
        #expect((first.count, second.count) == (299, 298))
    }
}
