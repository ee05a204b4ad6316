import Foundation
import ParleyCore
import ParleyServerStore
import Testing

@Suite("Resumption tokens in the server store")
struct ResumptionTokenStoreTests {
    let first: [UInt8] = Array(repeating: 1, count: 32)
    let second: [UInt8] = Array(repeating: 2, count: 32)
    let third: [UInt8] = Array(repeating: 3, count: 32)

    @Test("a token is redeemed once, for its user, before it expires; its successor is stored with it")
    func redeem() throws {
        try withTemporaryStore { store, _ in
            let alice = try store.registerUser(
                person("alice"), passwordHash: "h", requestedID: nil, minimumID: 1000, now: now
            ).userID
            let bob = try store.registerUser(
                person("bob"), passwordHash: "h", requestedID: nil, minimumID: 1000, now: now
            ).userID
            let later = now.addingTimeInterval(3600)
            try store.storeResumptionToken(hash: first, for: alice, expiresAt: later, now: now)
            #expect(
                try store.redeemResumptionToken(
                    hash: first, for: alice, replacingWith: second, expiresAt: later, now: now))
            #expect(
                !(try store.redeemResumptionToken(
                    hash: first, for: alice, replacingWith: third, expiresAt: later, now: now)))
            // Another user's token is refused and used up.
            #expect(
                !(try store.redeemResumptionToken(
                    hash: second, for: bob, replacingWith: third, expiresAt: later, now: now)))
            #expect(
                !(try store.redeemResumptionToken(
                    hash: second, for: alice, replacingWith: third, expiresAt: later, now: now)))
            #expect(try store.resumptionTokenCount() == 0)

            // Expired: refused, and pruned when the next token is stored.
            try store.storeResumptionToken(hash: first, for: alice, expiresAt: now.addingTimeInterval(1), now: now)
            try store.storeResumptionToken(hash: second, for: alice, expiresAt: later, now: now.addingTimeInterval(2))
            #expect(try store.resumptionTokenCount() == 1)
            #expect(
                !(try store.redeemResumptionToken(
                    hash: first, for: alice, replacingWith: third, expiresAt: later, now: now.addingTimeInterval(2))))
            #expect(
                !(try store.redeemResumptionToken(
                    hash: second, for: alice, replacingWith: third, expiresAt: later, now: later)))

            // Revocation takes all of one user's tokens and no one else's.
            try store.storeResumptionToken(hash: first, for: alice, expiresAt: later, now: now)
            try store.storeResumptionToken(hash: second, for: alice, expiresAt: later, now: now)
            try store.storeResumptionToken(hash: third, for: bob, expiresAt: later, now: now)
            try store.revokeResumptionTokens(for: alice)
            #expect(try store.resumptionTokenCount() == 1)
            #expect(
                try store.redeemResumptionToken(hash: third, for: bob, replacingWith: first, expiresAt: later, now: now)
            )
        }
    }
}
