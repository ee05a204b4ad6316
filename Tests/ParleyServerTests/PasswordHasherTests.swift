import Foundation
import Testing

@testable import ParleyServer

@Suite("PasswordHasher")
struct PasswordHasherTests {
    let hasher = PasswordHasher(cost: .insecureFastForTesting)

    @Test("the right password matches, a wrong one does not")
    func verifies() throws {
        let hash = try hasher.hash("correct horse")
        #expect(hasher.verify("correct horse", against: hash))
        #expect(!hasher.verify("correct horsE", against: hash))
        #expect(!hasher.verify("", against: hash))
    }

    @Test("every hash has its own salt")
    func salted() throws {
        let first = try hasher.hash("same")
        let second = try hasher.hash("same")
        #expect(first != second)
        #expect(hasher.verify("same", against: first))
        #expect(hasher.verify("same", against: second))
    }

    @Test("the cost is encoded in the hash, so a changed cost still verifies old hashes")
    func costInHash() throws {
        let hash = try PasswordHasher(cost: .init(log2N: 5, blockSize: 2, parallelism: 1)).hash("pw")
        let parts = hash.split(separator: "$", omittingEmptySubsequences: false)
        #expect(parts.count == 6)
        #expect(Array(parts.prefix(4)) == ["scrypt", "5", "2", "1"])
        #expect(Data(base64Encoded: String(parts[4]))?.count == 16)
        #expect(Data(base64Encoded: String(parts[5]))?.count == 32)
        #expect(hasher.verify("pw", against: hash))
    }

    @Test("the default cost hashes and verifies")
    func defaultCost() throws {
        let strong = PasswordHasher(cost: .default)
        let hash = try strong.hash("pw")
        #expect(hash.hasPrefix("scrypt$14$8$1$"))
        #expect(strong.verify("pw", against: hash))
    }

    @Test(
        "a malformed stored hash never matches and never crashes",
        arguments: [
            "",
            "scrypt",
            "scrypt$4$1$1$",
            "scrypt$4$1$1$$",
            "bcrypt$4$1$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "scrypt$x$1$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "scrypt$0$1$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "scrypt$99$1$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "scrypt$4$0$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "scrypt$4$1$-1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "scrypt$4$1$1$not base64!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "scrypt$4$1$1$AAAAAAAAAAAAAAAAAAAAAA==$not base64!",
            "scrypt$4$1$1$AAAAAAAAAAAAAAAAAAAAAA==$",
            "scrypt$4$1$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=$extra",
            // Costs no server would choose: gigabytes of memory. Must be refused, not attempted.
            "scrypt$24$64$16$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "scrypt$22$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            // An absurd output length.
            "scrypt$4$1$1$AAAAAAAAAAAAAAAAAAAAAA==$" + String(repeating: "A", count: 40_000),
        ]
    )
    func malformedNeverMatches(stored: String) {
        let start = ContinuousClock.now
        #expect(!hasher.verify("", against: stored))
        #expect(!hasher.verify("pw", against: stored))
        #expect(ContinuousClock.now - start < .seconds(2))
    }
}
