/// First-in, first-out asynchronous locks, one per key: keep the messages to one recipient in
/// order while the outbox is flushed and new messages are sent, without making a slow recipient
/// (a dial that times out) hold up messages to the others.
actor KeyedSerialLock<Key: Hashable & Sendable> {
    private struct Entry {
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// The held keys, each with the tasks waiting for it, in arrival order.
    private var held: [Key: Entry] = [:]

    /// Runs `body` holding `key`'s lock, after the tasks that asked for it before, and releases
    /// it however `body` ends.
    nonisolated func withLock<T: Sendable, E: Error>(
        _ key: Key,
        _ body: () async throws(E) -> T
    ) async throws(E) -> T {
        await lock(key)
        let result: Result<T, E>
        do throws(E) {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        await unlock(key)
        return try result.get()
    }

    private func lock(_ key: Key) async {
        guard held[key] != nil else {
            held[key] = Entry()
            return
        }
        await withCheckedContinuation { held[key]?.waiters.append($0) }
    }

    private func unlock(_ key: Key) {
        guard var entry = held[key] else {
            assertionFailure("unlock(\(key)) without lock")
            return
        }
        if entry.waiters.isEmpty {
            held[key] = nil
        } else {
            let next = entry.waiters.removeFirst()
            held[key] = entry
            next.resume()
        }
    }
}
