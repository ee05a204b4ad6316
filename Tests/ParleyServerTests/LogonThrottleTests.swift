import ParleyCore
import Testing

@testable import ParleyServer

@Suite("LogonThrottle")
struct LogonThrottleTests {
    let user = UserID(1000)

    @Test("the first failures are free, then the back-off doubles up to the cap")
    func backOff() {
        let throttle = LogonThrottle(
            policy: .init(freeAttempts: 3, initialBackoff: .seconds(1), maximumBackoff: .seconds(5)))
        let now = ContinuousClock.now
        for _ in 0..<3 {
            #expect(throttle.retryAfter(for: user, now: now) == nil)
            throttle.recordFailure(for: user, now: now)
        }
        #expect(throttle.retryAfter(for: user, now: now) == nil)
        throttle.recordFailure(for: user, now: now)
        #expect(throttle.retryAfter(for: user, now: now) == .seconds(1))
        #expect(throttle.retryAfter(for: user, now: now + .milliseconds(400)) == .milliseconds(600))
        #expect(throttle.retryAfter(for: user, now: now + .seconds(1)) == nil)

        throttle.recordFailure(for: user, now: now)
        #expect(throttle.retryAfter(for: user, now: now) == .seconds(2))
        throttle.recordFailure(for: user, now: now)
        #expect(throttle.retryAfter(for: user, now: now) == .seconds(4))
        throttle.recordFailure(for: user, now: now)
        #expect(throttle.retryAfter(for: user, now: now) == .seconds(5))
        for _ in 0..<40 { throttle.recordFailure(for: user, now: now) }
        #expect(throttle.retryAfter(for: user, now: now) == .seconds(5))

        // Other users are not affected.
        #expect(throttle.retryAfter(for: UserID(1001), now: now) == nil)
    }

    @Test("a successful logon resets the count")
    func successResets() {
        let throttle = LogonThrottle(policy: .init())
        let now = ContinuousClock.now
        for _ in 0..<4 { throttle.recordFailure(for: user, now: now) }
        #expect(throttle.retryAfter(for: user, now: now) != nil)
        throttle.recordSuccess(for: user)
        #expect(throttle.retryAfter(for: user, now: now) == nil)
        for _ in 0..<3 { throttle.recordFailure(for: user, now: now) }
        #expect(throttle.retryAfter(for: user, now: now) == nil)
    }
}
