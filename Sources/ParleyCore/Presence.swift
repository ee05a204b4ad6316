public import struct Foundation.Date

/// What a user shows to the users who have it in their contacts.
public enum PresenceState: String, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// Not logged on (or, for a LAN peer, no live link and no advertisement).
    case offline
    /// Logged on and available.
    case online
    /// Logged on, away from the keyboard.
    case away
    /// Logged on, not to be disturbed.
    case busy

    /// The number that stands for the state on the wire (docs/PROTOCOL.md, "Presence").
    public var wireValue: UInt32 {
        switch self {
        case .offline: 0
        case .online: 1
        case .away: 2
        case .busy: 3
        }
    }

    /// The state a wire value stands for; nil for a value this version does not know.
    public init?(wireValue: UInt32) {
        switch wireValue {
        case 0: self = .offline
        case 1: self = .online
        case 2: self = .away
        case 3: self = .busy
        default: return nil
        }
    }

    public var description: String { rawValue }
}

/// A user's presence: its state, an optional status text, and where the knowledge comes from.
public struct Presence: Hashable, Sendable, Codable, CustomStringConvertible {
    /// Where a presence was learnt.
    public enum Source: String, Hashable, Sendable, Codable {
        /// From the server: the user's session and the state it set.
        case server
        /// From the LAN while the server cannot be asked: the peer's mDNS advertisement and the
        /// liveness of its direct link.
        case lan
    }

    // Stored in this order (the word-sized ones first), so that a presence takes 32 bytes
    // instead of 48: the server holds one per online user.

    /// Free text chosen by the user ("at lunch"), at most ``Presence/maximumTextBytes`` bytes of
    /// valid UTF-8; empty when none.
    public var text: String
    /// When the state last changed, as the source saw it.
    public var since: Date?
    public var state: PresenceState
    public var source: Source

    /// The longest status text, in UTF-8 bytes.
    public static let maximumTextBytes = 256

    public init(state: PresenceState, text: String = "", source: Source = .server, since: Date? = nil) {
        self.state = state
        self.text = text
        self.source = source
        self.since = since
    }

    /// Offline, no text.
    public static let offline = Presence(state: .offline)

    public var description: String {
        let base = text.isEmpty ? state.rawValue : "\(state.rawValue) (\(text))"
        return source == .lan ? "\(base) [lan]" : base
    }

    /// Checks a state and status text a user asks to show.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidPresence`` when the text is
    ///   longer than ``maximumTextBytes`` or contains control characters, or when the state is ``PresenceState/offline`` (a user is offline by logging off).
    public static func validateChoice(state: PresenceState, text: String) throws(ParleyError) {
        guard state != .offline else {
            throw ParleyError(code: .invalidPresence, message: "offline is not a state to choose: log off instead")
        }
        guard text.utf8.count <= maximumTextBytes else {
            throw ParleyError(
                code: .invalidPresence,
                message: "status text of \(text.utf8.count) bytes exceeds the maximum of \(maximumTextBytes) bytes"
            )
        }
        guard !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ParleyError(code: .invalidPresence, message: "status text contains control characters")
        }
    }
}
