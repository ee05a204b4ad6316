/// A user's numeric identity: 32 bits, assigned by the server at registration.
///
/// ``UserID/server`` (0) is the address of the server application itself.
public struct UserID: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// The server application's address: messages sent here reach the server, not a user.
    public static let server = UserID(0)

    public var description: String { String(rawValue) }

    public static func < (lhs: UserID, rhs: UserID) -> Bool { lhs.rawValue < rhs.rawValue }
}

extension UserID: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: UInt32) { self.rawValue = value }
}

extension UserID {
    /// Parses a decimal user ID ("1042"); `nil` for anything else.
    public init?(_ text: some StringProtocol) {
        guard let value = UInt32(text) else { return nil }
        self.rawValue = value
    }
}

/// A message's identity, chosen by its sender and unique among that sender's messages.
///
/// The server de-duplicates by (sender, message ID, recipient), so resending a message with
/// the same ID after a reconnect never delivers it twice.
public struct MessageID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// A random, practically unique ID (64 random bits, never 0).
    public static func random() -> MessageID {
        MessageID(UInt64.random(in: 1...UInt64.max))
    }

    public var description: String { String(rawValue) }
}

extension MessageID: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: UInt64) { self.rawValue = value }
}
