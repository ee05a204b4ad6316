public import ParleyCore

/// The TXT record of a Parley service (`_parley._tcp`), with pure encoding and decoding.
///
/// Entries are RFC 6763 `key=value` strings of at most 255 bytes each; keys are compared
/// case-insensitively and only the first occurrence of a key counts.
///
/// | key    | value                                        |          |
/// |--------|----------------------------------------------|----------|
/// | `pv`   | record version, decimal (this code writes 1) | required |
/// | `node` | node ID (52 base32 characters, `NodeID`)     | required |
/// | `uid`  | user ID, decimal `UInt32`                    | optional |
/// | `name` | user name (UTF-8)                            | optional |
/// | `srv`  | the server the user belongs to (UTF-8)       | optional |
/// | `st`   | status token, such as `online` (UTF-8)       | optional |
///
/// A later version keeps these keys and their meaning and may add keys; a change that breaks
/// them would use another service type. Decoding never traps: anything it cannot use is skipped,
/// and a record without a usable `pv` and `node` is not a Parley record.
public struct TXTRecord: Hashable, Sendable {
    /// The version this code writes in `pv`.
    public static let currentVersion = 1
    /// The DNS limit for one TXT string (`key=value`), in bytes.
    public static let maximumEntryLength = 255

    public static let versionKey = "pv"
    public static let nodeKey = "node"
    public static let userIDKey = "uid"
    public static let userNameKey = "name"
    public static let serverKey = "srv"
    public static let statusKey = "st"

    public var version: Int
    public var nodeID: NodeID
    public var userID: UInt32?
    public var userName: String?
    public var server: String?
    public var status: String?

    public init(
        version: Int = TXTRecord.currentVersion,
        nodeID: NodeID,
        userID: UInt32? = nil,
        userName: String? = nil,
        server: String? = nil,
        status: String? = nil
    ) {
        self.version = version
        self.nodeID = nodeID
        self.userID = userID
        self.userName = userName
        self.server = server
        self.status = status
    }

    /// The TXT fields of a service record.
    public init(_ record: ServiceRecord) {
        self.init(
            nodeID: record.nodeID,
            userID: record.userID,
            userName: record.userName,
            server: record.server,
            status: record.status
        )
    }

    // MARK: - Encoding

    /// The TXT strings for this record, `pv` first.
    ///
    /// Identity fields (`node`, `srv`) must fit in one 255-byte string or encoding throws; the
    /// free-text fields (`name`, `st`) are shortened on a character boundary to fit. Empty
    /// optional fields are left out.
    /// - Throws: ``DiscoveryError/Code/invalidRecord``.
    public func encoded() throws(DiscoveryError) -> [[UInt8]] {
        guard version >= 1 else {
            throw DiscoveryError(code: .invalidRecord, message: "record version must be at least 1, got \(version)")
        }
        var entries: [[UInt8]] = [Self.entry(Self.versionKey, String(version))]
        entries.append(Self.entry(Self.nodeKey, nodeID.description))
        if let userID {
            entries.append(Self.entry(Self.userIDKey, String(userID)))
        }
        if let userName, !userName.isEmpty {
            entries.append(Self.entry(Self.userNameKey, Self.truncated(userName, for: Self.userNameKey)))
        }
        if let server, !server.isEmpty {
            entries.append(try Self.exactEntry(Self.serverKey, server, field: "server"))
        }
        if let status, !status.isEmpty {
            entries.append(Self.entry(Self.statusKey, Self.truncated(status, for: Self.statusKey)))
        }
        return entries
    }

    private static func entry(_ key: String, _ value: String) -> [UInt8] {
        Array(key.utf8) + [UInt8(ascii: "=")] + Array(value.utf8)
    }

    private static func exactEntry(_ key: String, _ value: String, field: String) throws(DiscoveryError) -> [UInt8] {
        let bytes = entry(key, value)
        guard bytes.count <= maximumEntryLength else {
            throw DiscoveryError(
                code: .invalidRecord,
                message: "\(field) is \(value.utf8.count) bytes; at most \(maximumEntryLength - key.utf8.count - 1) fit"
            )
        }
        return bytes
    }

    /// `value` cut to the longest prefix of whole characters whose `key=value` fits.
    static func truncated(_ value: String, for key: String) -> String {
        let budget = maximumEntryLength - key.utf8.count - 1
        guard value.utf8.count > budget else { return value }
        var used = 0
        var end = value.startIndex
        for index in value.indices {
            let next = value.index(after: index)
            let size = value.utf8.distance(from: index, to: next)
            guard used + size <= budget else { break }
            used += size
            end = next
        }
        return String(value[..<end])
    }

    // MARK: - Decoding

    /// Decodes TXT strings as received, in any order; `nil` when they are not a Parley record.
    ///
    /// Tolerant of garbage: strings over 255 bytes, empty or non-printable keys, values that are
    /// not UTF-8 and unparsable numbers are skipped (an unusable optional field reads as `nil`).
    /// A missing or unusable `pv` or `node` makes the whole record unusable.
    public init?(decoding entries: [[UInt8]]) {
        var values: [String: [UInt8]?] = [:]  // nil value: a key present without "="
        for entry in entries where !entry.isEmpty && entry.count <= Self.maximumEntryLength {
            let separator = entry.firstIndex(of: UInt8(ascii: "="))
            let keyBytes = entry[..<(separator ?? entry.endIndex)]
            guard !keyBytes.isEmpty, keyBytes.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) else { continue }
            let key = String(decoding: keyBytes, as: UTF8.self).lowercased()
            guard !values.keys.contains(key) else { continue }  // RFC 6763 6.4: only the first occurrence counts
            values.updateValue(separator.map { Array(entry[entry.index(after: $0)...]) }, forKey: key)
        }
        func text(_ key: String) -> String? {
            guard let value = values[key] ?? nil, !value.isEmpty else { return nil }
            return String(validating: value, as: UTF8.self)
        }
        guard let versionText = text(Self.versionKey), let version = Self.decimal(versionText, maximumDigits: 9),
            version >= 1
        else { return nil }
        guard let nodeID = text(Self.nodeKey).flatMap(NodeID.init) else { return nil }
        let userID = text(Self.userIDKey).flatMap { Self.decimal($0, maximumDigits: 10) }.flatMap(UInt32.init(exactly:))
        self.init(
            version: version,
            nodeID: nodeID,
            userID: userID,
            userName: text(Self.userNameKey),
            server: text(Self.serverKey),
            status: text(Self.statusKey)
        )
    }

    /// A plain decimal number: ASCII digits only, no sign, no spaces.
    private static func decimal(_ text: String, maximumDigits: Int) -> Int? {
        guard !text.isEmpty, text.utf8.count <= maximumDigits,
            text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return nil }
        return Int(text)
    }
}
