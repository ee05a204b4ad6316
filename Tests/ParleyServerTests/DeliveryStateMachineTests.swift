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
        var first = InFlightMessages()
        #expect(first.count == 0)
        let removed1 = first.remove(Key(sender: UserID(rawValue: 7), messageID: MessageID(1)))
        #expect(!removed1)
        for id in UInt64(0)..<300 {
            first.insert(Key(sender: UserID(rawValue: 7), messageID: MessageID(id)), sequence: Int64(id) + 1)
        }
        #expect(first.count == 300)
        var second = first
        let removed2 = second.remove(Key(sender: UserID(rawValue: 7), messageID: MessageID(0)))
        #expect(removed2)
        let removed3 = second.remove(Key(sender: UserID(rawValue: 7), messageID: MessageID(299)))
        #expect(removed3)
        let removed4 = second.remove(Key(sender: UserID(rawValue: 8), messageID: MessageID(1)))
        #expect(!removed4)
        #expect(second.count == 298)
        #expect(first.count == 300)
        let removed5 = first.remove(Key(sender: UserID(rawValue: 7), messageID: MessageID(299)))
        #expect(removed5)
        let removed6 = first.remove(Key(sender: UserID(rawValue: 7), messageID: MessageID(299)))
        #expect(!removed6)
        #expect(first.count == 299)
        #expect(second.count == 298)
    }
}
