import Foundation
import GRDB
import ParleyCore
import ParleyNode
import ParleyNodeStore
import ParleyTesting
import Synchronization
import Testing

/// The node reaches its SQLite registry only off Swift's cooperative pool (issue 9): a registry
/// that waits for its write lock must not stall the node's other tasks, nor the application's.
@Suite(.serialized, .timeLimit(.minutes(2))) struct CooperativePoolTests {
    @Test func thePoolRunsWhileTheRegistryWaitsForItsLockUnder32SendsAndDeliveries() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withTwoLANNodes(in: directory) { ann, annEvents, bob, bobEvents in
            do {
                // Another connection takes bob's registry write lock for 4.5 s: each of bob's
                // registry writes (recording a received message, its history, a sent message's
                // history) waits for it, within the 5 s busy timeout.
                let hold = Duration.milliseconds(4500)
                let holder = WriteLockHolder(
                    path: directory.subdirectory("bob") + "/" + NodeRegistry.fileName, hold: hold)
                try await holder.waitUntilLocked()
                let locked = ContinuousClock.now
                let probe = PoolProbe()
                let probing = Task { await probe.run() }
                // 32 sends each way at once: bob delivers ann's 32 and sends 32 of its own.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<32 {
                        group.addTask { _ = try await ann.send(.text("to bob \(index)"), to: .node(bob.nodeID)) }
                        group.addTask { _ = try await bob.send(.text("to ann \(index)"), to: .node(ann.nodeID)) }
                    }
                    try await group.waitForAll()
                }
                try await bobEvents.wait("ann's 32 messages", timeout: .seconds(30)) { _ in
                    bobEvents.messages.count >= 32
                }
                try await annEvents.wait("bob's 32 messages", timeout: .seconds(30)) { _ in
                    annEvents.messages.count >= 32
                }
                probing.cancel()
                let longest = await probing.value
                let elapsed = ContinuousClock.now - locked
                print(
                    "registry locked \(hold); all 64 messages delivered after \(elapsed); longest pool stall \(longest)"
                )
                #expect(holder.heldFor >= hold, "the lock was held as long as planned")
                #expect(elapsed >= hold, "bob's deliveries waited for the lock")
                // A pool blocked by the waiting writes would stall about as long as the lock is held.
                #expect(longest < .seconds(2), "a task on the cooperative pool waited \(longest)")
                #expect(Set(bobEvents.messages.map(\.body)).count == 32)
                #expect(Set(annEvents.messages.map(\.body)).count == 32)
            }
        }
    }
}

/// Holds a SQLite database's write lock (`BEGIN IMMEDIATE`) for `hold`, from a thread of its own.
final class WriteLockHolder: Sendable {
    private let state = Mutex<(locked: Bool, failure: String?, heldFor: Duration)>((false, nil, .zero))

    init(path: String, hold: Duration) {
        let thread = Thread { [self] in
            do {
                // It waits for bob's own writes in flight, as any writer does.
                var configuration = Configuration()
                configuration.busyMode = .timeout(30)
                let queue = try DatabaseQueue(path: path, configuration: configuration)
                try queue.writeWithoutTransaction { db in
                    try db.execute(sql: "BEGIN IMMEDIATE")
                    let start = ContinuousClock.now
                    self.state.withLock { $0.locked = true }
                    Thread.sleep(
                        forTimeInterval: Double(hold.components.seconds) + Double(hold.components.attoseconds) / 1e18)
                    try db.execute(sql: "COMMIT")
                    self.state.withLock { $0.heldFor = ContinuousClock.now - start }
                }
            } catch {
                self.state.withLock { $0.failure = "\(error)" }
            }
        }
        thread.start()
    }

    var heldFor: Duration { state.withLock { $0.heldFor } }

    func waitUntilLocked() async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let (locked, failure) = state.withLock { ($0.locked, $0.failure) }
            if let failure {
                Issue.record("cannot lock the registry: \(failure)")
                throw CancellationError()
            }
            if locked { return }
            guard ContinuousClock.now < deadline else {
                Issue.record("the registry lock was not taken within 30 s")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// Sleeps 20 ms at a time on the cooperative pool and reports the longest overshoot: how long a
/// ready task waited for a pool thread.
struct PoolProbe {
    func run() async -> Duration {
        var longest = Duration.zero
        while !Task.isCancelled {
            let start = ContinuousClock.now
            do {
                try await Task.sleep(for: .milliseconds(20))
            } catch {
                break
            }
            longest = max(longest, ContinuousClock.now - start - .milliseconds(20))
        }
        return longest
    }
}
