import Foundation
import ParleyCore
import Synchronization

/// Slows down password guessing: after a few consecutive failures for one user ID, further
/// attempts are refused without checking the password until a back-off (doubling per failure,
/// capped) has passed. A successful logon resets the count.
final class LogonThrottle: Sendable {
    struct Policy: Sendable, Hashable {
        /// Failures allowed before back-off starts.
        var freeAttempts: Int = 3
        /// The back-off after the first throttled failure; doubles with each further failure.
        var initialBackoff: Duration = .seconds(1)
        var maximumBackoff: Duration = .seconds(60)
    }

    private struct Entry {
        var failures: Int
        var blockedUntil: ContinuousClock.Instant
    }

    private let policy: Policy
    private let entries = Mutex<[UserID: Entry]>([:])

    init(policy: Policy) {
        self.policy = policy
    }

    /// How long the caller must wait before an attempt for `user` is checked, or nil.
    func retryAfter(for user: UserID, now: ContinuousClock.Instant = .now) -> Duration? {
        entries.withLock { entries in
            guard let entry = entries[user], entry.blockedUntil > now else { return nil }
            return entry.blockedUntil - now
        }
    }

    func recordFailure(for user: UserID, now: ContinuousClock.Instant = .now) {
        entries.withLock { entries in
            var entry = entries[user] ?? Entry(failures: 0, blockedUntil: now)
            entry.failures += 1
            let over = entry.failures - policy.freeAttempts
            if over > 0 {
                let factor = 1 << min(over - 1, 16)
                entry.blockedUntil = now + min(policy.initialBackoff * factor, policy.maximumBackoff)
            }
            entries[user] = entry
            // Bound memory: forget entries whose back-off is long over.
            if entries.count > 100_000 {
                entries = entries.filter { $0.value.blockedUntil > now }
            }
        }
    }

    func recordSuccess(for user: UserID) {
        _ = entries.withLock { $0.removeValue(forKey: user) }
    }
}
