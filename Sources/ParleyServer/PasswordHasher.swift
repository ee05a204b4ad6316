import Crypto
import Foundation
import ParleyCore
import _CryptoExtras

/// Salted scrypt password hashes, stored as `scrypt$<log2 N>$<r>$<p>$<salt base64>$<hash base64>`.
///
/// The cost lives in each hash, so raising ``Cost`` later only affects new and changed
/// passwords. Hashing is deliberately slow: callers run it off the event loops.
struct PasswordHasher: Sendable {
    /// scrypt parameters: the server configuration's own type, so there is one definition.
    typealias Cost = ParleyServer.Configuration.PasswordCost

    var cost: Cost

    private static let saltBytes = 16
    private static let hashBytes = 32

    func hash(_ password: String) throws -> String {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<Self.saltBytes).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let derived = try Self.derive(password, salt: salt, cost: cost)
        return [
            "scrypt", String(cost.log2N), String(cost.blockSize), String(cost.parallelism),
            Data(salt).base64EncodedString(), Data(derived).base64EncodedString(),
        ].joined(separator: "$")
    }

    /// True when `password` matches `encoded`. A malformed stored hash never matches.
    func verify(_ password: String, against encoded: String) -> Bool {
        let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "scrypt",
            let log2N = Int(parts[1]), (1...24).contains(log2N),
            let blockSize = Int(parts[2]), (1...64).contains(blockSize),
            let parallelism = Int(parts[3]), (1...16).contains(parallelism),
            let salt = Data(base64Encoded: String(parts[4])),
            let expected = Data(base64Encoded: String(parts[5])), (16...64).contains(expected.count)
        else { return false }
        let cost = Cost(log2N: log2N, blockSize: blockSize, parallelism: parallelism)
        guard cost.workBytes <= Cost.maximumWorkBytes else { return false }
        guard let derived = try? Self.derive(password, salt: Array(salt), cost: cost, length: expected.count) else {
            return false
        }
        // Constant-time comparison.
        var difference: UInt8 = 0
        for (a, b) in zip(derived, expected) { difference |= a ^ b }
        return difference == 0 && derived.count == expected.count
    }

    private static func derive(_ password: String, salt: [UInt8], cost: Cost, length: Int = hashBytes) throws -> [UInt8]
    {
        let key = try KDF.Scrypt.deriveKey(
            from: Array(password.utf8),
            salt: salt,
            outputByteCount: length,
            rounds: 1 << cost.log2N,
            blockSize: cost.blockSize,
            parallelism: cost.parallelism
        )
        return key.withUnsafeBytes { Array($0) }
    }
}

extension ParleyServer.Configuration.PasswordCost {
    /// 128 * N * r * p: the bytes scrypt's main loop touches, summed over its lanes, which
    /// bounds both its memory and its time.
    var workBytes: Int {
        guard (0...30).contains(log2N), (1...1024).contains(blockSize), (1...1024).contains(parallelism) else {
            return .max
        }
        return 128 * (1 << log2N) * blockSize * parallelism
    }

    /// The most work a hash may ask for (1 GiB, e.g. N = 2^20, r = 8, p = 1): 64 times the
    /// default, yet a corrupt stored hash cannot make a logon allocate gigabytes.
    static let maximumWorkBytes = 1 << 30
}
