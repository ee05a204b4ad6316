import ParleyCore
import Testing

@testable import ParleyServer

@Suite("LogonThrottle")
struct LogonThrottleTests {
    let user = UserID(1000)
    let now = ContinuousClock.now

    func attempt(_ user: UserID? = nil, from address: String = "10.0.0.9", node: String? = nil) -> LogonThrottle.Attempt
    {
        LogonThrottle.Attempt(user: user ?? self.user, address: address, nodeID: node)
    }

    /// Checks one attempt and reports `outcome`; returns the refusal if it was not checked.
    @discardableResult
    func check(
        _ throttle: inout LogonThrottle,
        _ attempt: LogonThrottle.Attempt,
        _ outcome: LogonThrottle.Outcome,
        at time: ContinuousClock.Instant? = nil
    ) -> LogonThrottle.Refusal? {
        switch throttle.begin(attempt, now: time ?? now) {
        case .success(let ticket):
            _ = throttle.finish(ticket, outcome, now: time ?? now)
            return nil
        case .failure(let refusal):
            return refusal
        }
    }

    @Test("the first failures for a user are free, then the back-off doubles up to the cap")
    func backOff() {
        var throttle = LogonThrottle(
            policy: .init(freeAttempts: 3, freeAttemptsPerAddress: 1000, maximumBackoff: .seconds(5)))
        for _ in 0..<3 { #expect(check(&throttle, attempt(), .failed) == nil) }
        #expect(check(&throttle, attempt(), .failed) == nil)
        #expect(check(&throttle, attempt(), .failed) == .userBlocked(retryAfter: .seconds(1)))
        #expect(
            check(&throttle, attempt(), .failed, at: now + .milliseconds(400))
                == .userBlocked(retryAfter: .milliseconds(600)))
        #expect(check(&throttle, attempt(), .failed, at: now + .seconds(1)) == nil)
        #expect(check(&throttle, attempt(), .failed, at: now + .seconds(1)) == .userBlocked(retryAfter: .seconds(2)))
        for step in 2...40 {
            check(&throttle, attempt(), .failed, at: now + .seconds(10 * step))
        }
        #expect(check(&throttle, attempt(), .failed, at: now + .seconds(400)) == .userBlocked(retryAfter: .seconds(5)))
        // Other users are not affected.
        #expect(check(&throttle, attempt(UserID(1001)), .succeeded, at: now + .seconds(400)) == nil)
    }

    @Test("a success resets the user's count; failures are forgotten after a while")
    func successResets() {
        var throttle = LogonThrottle()
        for _ in 0..<3 { check(&throttle, attempt(from: "10.0.0.1"), .failed) }
        check(&throttle, attempt(from: "10.0.0.2"), .succeeded)
        for _ in 0..<3 { #expect(check(&throttle, attempt(from: "10.0.0.3"), .failed) == nil) }
        #expect(check(&throttle, attempt(from: "10.0.0.3"), .failed) == nil)
        #expect(check(&throttle, attempt(from: "10.0.0.4"), .failed) != nil)
        // 15 minutes without a failure: the count starts again.
        let later = now + .seconds(15 * 60 + 2)
        for _ in 0..<4 { #expect(check(&throttle, attempt(from: "10.0.0.4"), .failed, at: later) == nil) }
    }

    @Test("attempts in flight are counted: a second check for a user, or a third from an address, waits")
    func inFlight() throws {
        var throttle = LogonThrottle()
        let first = try throttle.begin(attempt(from: "10.0.0.1"), now: now).get()
        #expect(
            throttle.begin(attempt(from: "10.0.0.1"), now: now) == .failure(.userBusy(retryAfter: .milliseconds(250))))
        #expect(
            throttle.begin(attempt(from: "10.0.0.2"), now: now) == .failure(.userBusy(retryAfter: .milliseconds(250))))
        let second = try throttle.begin(attempt(UserID(1001), from: "10.0.0.1"), now: now).get()
        #expect(
            throttle.begin(attempt(UserID(1002), from: "10.0.0.1"), now: now)
                == .failure(.addressBusy(retryAfter: .milliseconds(250))))
        _ = throttle.finish(first, .abandoned, now: now)
        _ = throttle.finish(second, .failed, now: now)
        #expect(check(&throttle, attempt(UserID(1002), from: "10.0.0.1"), .succeeded) == nil)
        #expect(check(&throttle, attempt(from: "10.0.0.1"), .succeeded) == nil)
    }

    @Test("wrong resumption tokens count against the address only, never against the user")
    func resumptionTokens() {
        var throttle = LogonThrottle(policy: .init(freeAttemptsPerAddress: 3))
        for _ in 0..<3 {
            #expect(throttle.beginResumption(address: "10.6.6.6", now: now) == nil)
            #expect(throttle.resumptionFailed(address: "10.6.6.6", now: now).isEmpty)
        }
        #expect(throttle.resumptionFailed(address: "10.6.6.6", now: now).count == 1)
        #expect(throttle.beginResumption(address: "10.6.6.6", now: now) == .addressBlocked(retryAfter: .seconds(1)))
        // The same address's password logons are blocked too, but the user is not: another
        // address logs on with the password, and tokens from another address are checked.
        #expect(check(&throttle, attempt(from: "10.6.6.6"), .succeeded) != nil)
        #expect(check(&throttle, attempt(from: "10.0.0.1"), .succeeded) == nil)
        #expect(throttle.beginResumption(address: "10.0.0.1", now: now) == nil)
        #expect(throttle.beginResumption(address: "10.6.6.6", now: now + .seconds(2)) == nil)
    }

    @Test("an address that keeps failing is blocked for every user")
    func addressBackOff() {
        var throttle = LogonThrottle(policy: .init(freeAttemptsPerAddress: 5))
        for index in 0..<5 {
            #expect(check(&throttle, attempt(UserID(2000 + UInt32(index)), from: "10.6.6.6"), .failed) == nil)
        }
        #expect(check(&throttle, attempt(UserID(3000), from: "10.6.6.6"), .failed) == nil)
        let refusal = check(&throttle, attempt(UserID(3001), from: "10.6.6.6"), .succeeded)
        #expect(refusal == .addressBlocked(retryAfter: .seconds(1)))
        #expect(check(&throttle, attempt(UserID(3001), from: "10.0.0.1"), .succeeded) == nil)
    }

    @Test("a source that logged on before skips the user's back-off; its own failure ends that")
    func trustedSource() {
        var throttle = LogonThrottle()
        check(&throttle, attempt(from: "10.0.0.1"), .succeeded)
        check(&throttle, attempt(from: "10.0.0.2", node: "node-a"), .succeeded)
        // A guesser elsewhere locks the user for everyone else.
        for _ in 0..<6 { check(&throttle, attempt(from: "10.6.6.6"), .failed) }
        #expect(check(&throttle, attempt(from: "10.7.7.7"), .succeeded) != nil)
        // The known address and the known node still get their password checked.
        #expect(check(&throttle, attempt(from: "10.0.0.1"), .succeeded) == nil)
        #expect(check(&throttle, attempt(from: "10.9.9.9", node: "node-a"), .succeeded) == nil)
        // A wrong password from a trusted source ends its trust.
        #expect(check(&throttle, attempt(from: "10.0.0.1"), .failed) == nil)
        #expect(check(&throttle, attempt(from: "10.0.0.1"), .succeeded) != nil)
        // Trust is per user.
        #expect(check(&throttle, attempt(UserID(1001), from: "10.6.6.6"), .succeeded) == nil)
    }
}
