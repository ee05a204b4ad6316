import Testing

@testable import ParleyNode

@Suite struct WakeUpSignalTests {
    @Test func wakeUpsWhileNobodyWaitsAreKeptAsOne() async {
        let signal = WakeUpSignal()
        signal.signal()
        signal.signal()
        #expect(await signal.wait())
        // The second wake-up was folded into the first: the next one waits for a new one.
        let waiter = Task { await signal.wait() }
        signal.signal()
        #expect(await waiter.value)
    }

    @Test func finishingEndsTheWaiterAndEveryLaterWait() async {
        let signal = WakeUpSignal()
        let waiter = Task { await signal.wait() }
        // Wait until the waiter is parked or not: either way it must end with false.
        signal.finish()
        #expect(await waiter.value == false)
        signal.signal()
        #expect(await signal.wait() == false)
    }

    @Test func cancellingTheWaiterEndsItsWait() async {
        let signal = WakeUpSignal()
        let waiter = Task { await signal.wait() }
        waiter.cancel()
        #expect(await waiter.value == false)
        // The signal still works for the next waiter.
        signal.signal()
        #expect(await signal.wait())
    }

    @Test func aLoopSeesEveryBurstOfWakeUps() async {
        let signal = WakeUpSignal()
        let rounds = Counter()
        let loop = Task {
            while await signal.wait() { await rounds.increment() }
        }
        for _ in 0..<100 {
            signal.signal()
            await Task.yield()
        }
        signal.finish()
        await loop.value
        let count = await rounds.value
        #expect(count >= 1 && count <= 100)
    }

    actor Counter {
        var value = 0
        func increment() { value += 1 }
    }
}
