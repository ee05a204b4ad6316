import ParleyCore

/// Slows down password guessing without letting a guesser lock a user out (docs/PROTOCOL.md
/// section 9.2).
///
/// Every LOGON asks ``begin(_:now:)`` before its password is checked and reports the outcome
/// with ``finish(_:_:now:)``. Attempts are counted while they are in flight, so guesses sent in
/// parallel are refused without a check instead of all being checked at once, and failures are
/// counted per user ID and per source address, each with its own back-off. A source (address or
/// node ID) that logged on as a user before is trusted for that user: its attempts skip the
/// user's and the address's back-off, so a guesser elsewhere cannot lock the user out. A failure
/// from a trusted source ends that trust.
///
/// A pure value: the server keeps it behind a lock and passes the time in.
struct LogonThrottle: Sendable {
    struct Policy: Sendable, Hashable {
        /// Consecutive failures for one user ID before its back-off starts.
        var freeAttempts: Int = 3
        /// Failures from one address (for any user) before its back-off starts.
        var freeAttemptsPerAddress: Int = 10
        /// The back-off after the first throttled failure; doubles with each further failure.
        var initialBackoff: Duration = .seconds(1)
        var maximumBackoff: Duration = .seconds(60)
        /// Failure counts are forgotten after this long without a failure.
        var failureMemory: Duration = .seconds(15 * 60)
        /// Password checks from one address in flight at once (untrusted attempts).
        var checksInFlightPerAddress: Int = 2
        /// What a refused attempt is told to wait when it was refused because another check for
        /// the same user or address was in flight.
        var busyRetry: Duration = .milliseconds(250)
        /// How long a successful logon makes its source trusted for the user.
        var trustLifetime: Duration = .seconds(30 * 24 * 3600)
        /// The most entries of each kind kept in memory; expired ones are dropped beyond it.
        var maximumEntries: Int = 100_000
    }

    /// One LOGON as the throttle sees it.
    struct Attempt: Sendable, Hashable {
        var user: UserID
        /// The source IP address, without the port ("" when unknown).
        var address: String
        /// The node the logon declared, if any.
        var nodeID: String?
    }

    /// Why an attempt is refused without checking its password.
    enum Refusal: Error, Sendable, Hashable {
        /// The user ID is in back-off after repeated failures.
        case userBlocked(retryAfter: Duration)
        /// The source address is in back-off after repeated failures.
        case addressBlocked(retryAfter: Duration)
        /// A password check for this user ID (or from this trusted source) is in flight.
        case userBusy(retryAfter: Duration)
        /// The address has as many password checks in flight as it may.
        case addressBusy(retryAfter: Duration)

        var retryAfter: Duration {
            switch self {
            case .userBlocked(let wait), .addressBlocked(let wait), .userBusy(let wait), .addressBusy(let wait):
                wait
            }
        }
    }

    /// An attempt allowed to check its password; hand it back to ``finish(_:_:now:)``.
    struct Ticket: Sendable, Hashable {
        let attempt: Attempt
        /// The attempt came from a source trusted for the user.
        let trusted: Bool
    }

    enum Outcome: Sendable, Hashable {
        /// The password was right.
        case succeeded
        /// Unknown user ID or wrong password.
        case failed
        /// The check could not be completed (a storage error, shutdown): nothing is counted.
        case abandoned
    }

    /// A back-off that started, for the log.
    struct Block: Sendable, Hashable {
        enum Scope: Sendable, Hashable {
            case user(UserID)
            case address(String)
        }
        var scope: Scope
        var failures: Int
        var duration: Duration
    }

    private struct Failures {
        var count = 0
        var blockedUntil: ContinuousClock.Instant
        var lastFailure: ContinuousClock.Instant
    }

    fileprivate enum Source: Hashable {
        case address(UserID, String)
        case node(UserID, String)
    }

    private enum CheckKey: Hashable {
        case user(UserID)
        case trusted(UserID)
        case address(String)
    }

    private let policy: Policy
    private var users: [UserID: Failures] = [:]
    private var addresses: [String: Failures] = [:]
    private var trustedUntil = TrustTable()
    private var checksInFlight: [CheckKey: Int] = [:]

    init(policy: Policy = Policy()) {
        self.policy = policy
    }

    /// Decides whether an attempt's password may be checked now, and counts it as in flight.
    mutating func begin(_ attempt: Attempt, now: ContinuousClock.Instant) -> Result<Ticket, Refusal> {
        if isTrusted(attempt, now: now) {
            // One check at a time per user from trusted sources; no back-off applies.
            guard checksInFlight[.trusted(attempt.user), default: 0] == 0 else {
                return .failure(.userBusy(retryAfter: policy.busyRetry))
            }
            checksInFlight[.trusted(attempt.user), default: 0] += 1
            return .success(Ticket(attempt: attempt, trusted: true))
        }
        if let wait = Self.remainingBlock(addresses[attempt.address], now: now) {
            return .failure(.addressBlocked(retryAfter: wait))
        }
        if let wait = Self.remainingBlock(users[attempt.user], now: now) {
            return .failure(.userBlocked(retryAfter: wait))
        }
        guard checksInFlight[.address(attempt.address), default: 0] < policy.checksInFlightPerAddress else {
            return .failure(.addressBusy(retryAfter: policy.busyRetry))
        }
        guard checksInFlight[.user(attempt.user), default: 0] == 0 else {
            return .failure(.userBusy(retryAfter: policy.busyRetry))
        }
        checksInFlight[.address(attempt.address), default: 0] += 1
        checksInFlight[.user(attempt.user), default: 0] += 1
        return .success(Ticket(attempt: attempt, trusted: false))
    }

    /// Records the outcome of a checked attempt.
    ///
    /// - Returns: the back-offs this outcome started, for the log.
    mutating func finish(_ ticket: Ticket, _ outcome: Outcome, now: ContinuousClock.Instant) -> [Block] {
        let attempt = ticket.attempt
        if ticket.trusted {
            release(.trusted(attempt.user))
        } else {
            release(.address(attempt.address))
            release(.user(attempt.user))
        }
        switch outcome {
        case .abandoned:
            return []
        case .succeeded:
            // A trusted success leaves the user's count alone: it says nothing about guesses
            // from elsewhere.
            if !ticket.trusted { users[attempt.user] = nil }
            trust(attempt, now: now)
            return []
        case .failed:
            trustedUntil.forget(.address(attempt.user, attempt.address))
            if let node = attempt.nodeID { trustedUntil.forget(.node(attempt.user, node)) }
            var blocks: [Block] = []
            if let wait = Self.countFailure(in: &users[attempt.user], free: policy.freeAttempts, policy, now) {
                blocks.append(
                    Block(scope: .user(attempt.user), failures: users[attempt.user]?.count ?? 0, duration: wait))
            }
            let free = policy.freeAttemptsPerAddress
            if let wait = Self.countFailure(in: &addresses[attempt.address], free: free, policy, now) {
                blocks.append(
                    Block(
                        scope: .address(attempt.address), failures: addresses[attempt.address]?.count ?? 0,
                        duration: wait))
            }
            prune(now: now)
            return blocks
        }
    }

    /// Decides whether a resumption-token logon from `address` may be checked now.
    ///
    /// A token is 256 random bits, so a wrong one is not a password guess: it leaves the user's
    /// count alone and only the source address's back-off applies. The check is one SQLite
    /// write, so no limit on checks in flight either.
    func beginResumption(address: String, now: ContinuousClock.Instant) -> Refusal? {
        Self.remainingBlock(addresses[address], now: now).map { .addressBlocked(retryAfter: $0) }
    }

    /// Counts a refused resumption token against its source address.
    ///
    /// - Returns: the back-off this failure started, if any, for the log.
    mutating func resumptionFailed(address: String, now: ContinuousClock.Instant) -> [Block] {
        let free = policy.freeAttemptsPerAddress
        defer { prune(now: now) }
        guard let wait = Self.countFailure(in: &addresses[address], free: free, policy, now) else { return [] }
        return [Block(scope: .address(address), failures: addresses[address]?.count ?? 0, duration: wait)]
    }

    /// Trusts the attempt's sources for its user: a successful logon, or the registration that
    /// created the user.
    mutating func trust(_ attempt: Attempt, now: ContinuousClock.Instant) {
        trustedUntil.trust(.address(attempt.user, attempt.address), until: now + policy.trustLifetime)
        if let node = attempt.nodeID {
            trustedUntil.trust(.node(attempt.user, node), until: now + policy.trustLifetime)
        }
        prune(now: now)
    }

    private func isTrusted(_ attempt: Attempt, now: ContinuousClock.Instant) -> Bool {
        if trustedUntil.trusts(.address(attempt.user, attempt.address), now: now) { return true }
        if let node = attempt.nodeID, trustedUntil.trusts(.node(attempt.user, node), now: now) { return true }
        return false
    }

    private mutating func release(_ key: CheckKey) {
        let left = checksInFlight[key, default: 0] - 1
        checksInFlight[key] = left > 0 ? left : nil
    }

    private static func remainingBlock(_ failures: Failures?, now: ContinuousClock.Instant) -> Duration? {
        guard let failures, failures.blockedUntil > now else { return nil }
        return failures.blockedUntil - now
    }

    /// Counts one failure; returns the back-off it starts, if any.
    private static func countFailure(
        in entry: inout Failures?,
        free: Int,
        _ policy: Policy,
        _ now: ContinuousClock.Instant
    ) -> Duration? {
        var failures = entry ?? Failures(blockedUntil: now, lastFailure: now)
        if now - failures.lastFailure > policy.failureMemory { failures.count = 0 }
        failures.count += 1
        failures.lastFailure = now
        defer { entry = failures }
        let over = failures.count - free
        guard over > 0 else { return nil }
        let wait = min(policy.initialBackoff * (1 << min(over - 1, 16)), policy.maximumBackoff)
        failures.blockedUntil = now + wait
        return wait
    }

    /// Bounds memory: beyond the limit, entries that no longer matter are dropped.
    private mutating func prune(now: ContinuousClock.Instant) {
        let memory = policy.failureMemory
        func stale(_ failures: Failures) -> Bool {
            failures.blockedUntil <= now && now - failures.lastFailure > memory
        }
        if users.count > policy.maximumEntries { users = users.filter { !stale($0.value) } }
        if addresses.count > policy.maximumEntries { addresses = addresses.filter { !stale($0.value) } }
        if trustedUntil.count > policy.maximumEntries { trustedUntil.dropExpired(now: now) }
    }
}

extension LogonThrottle {
    /// The trusted sources and until when, in 12 bytes an entry instead of 40 (a server keeps
    /// one for every user that registered or logged on, for 30 days).
    ///
    /// A source is kept as a 64-bit hash of itself (Swift's `Hasher`, whose seed is chosen at
    /// random for each process, so no one can pick a source that collides with a trusted one),
    /// and its expiry as whole seconds (rounded up) after the table's first entry.
    fileprivate struct TrustTable {
        private var until: [UInt64: UInt32] = [:]
        private var epoch: ContinuousClock.Instant?

        var count: Int { until.count }

        private static func key(_ source: Source) -> UInt64 {
            var hasher = Hasher()
            hasher.combine(source)
            return UInt64(bitPattern: Int64(hasher.finalize()))
        }

        mutating func trust(_ source: Source, until instant: ContinuousClock.Instant) {
            let epoch = self.epoch ?? instant
            self.epoch = epoch
            let (seconds, attoseconds) = (instant - epoch).components
            let rounded = seconds + (attoseconds > 0 ? 1 : 0)
            until[Self.key(source)] = UInt32(clamping: max(rounded, 0))
        }

        func trusts(_ source: Source, now: ContinuousClock.Instant) -> Bool {
            guard let epoch, let seconds = until[Self.key(source)] else { return false }
            return epoch + .seconds(Int64(seconds)) > now
        }

        mutating func forget(_ source: Source) {
            until[Self.key(source)] = nil
        }

        mutating func dropExpired(now: ContinuousClock.Instant) {
            guard let epoch else { return }
            until = until.filter { epoch + .seconds(Int64($0.value)) > now }
        }
    }
}
