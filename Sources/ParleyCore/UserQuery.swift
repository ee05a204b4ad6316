/// A structured directory search: every filter must hold. Never raw SQL.
public struct UserQuery: Hashable, Sendable, Codable {
    public enum Match: String, Hashable, Sendable, Codable, CaseIterable {
        case exact
        case prefix
        case contains
    }

    public enum OnlineFilter: String, Hashable, Sendable, Codable, CaseIterable {
        case any
        case online
        case offline
    }

    public enum SortKey: Hashable, Sendable, Codable {
        case userID
        case field(UserField)
    }

    /// One condition on a text field, compared case-insensitively.
    public struct Filter: Hashable, Sendable, Codable {
        public var field: UserField
        public var match: Match
        public var value: String

        public init(_ field: UserField, _ match: Match, _ value: String) {
            self.field = field
            self.match = match
            self.value = value
        }
    }

    public var filters: [Filter]
    public var online: OnlineFilter
    public var sort: SortKey
    public var descending: Bool
    /// How many users to return at most; clamped to 1...``UserQuery/maximumLimit``.
    public var limit: Int

    public static let defaultLimit = 100
    public static let maximumLimit = 1000
    /// The most filters one query may have.
    public static let maximumFilters = 16
    /// The longest filter value, in UTF-8 bytes: no field is longer (``UserInfo/maximumFieldBytes``).
    public static let maximumValueBytes = UserInfo.maximumFieldBytes

    public init(
        filters: [Filter] = [],
        online: OnlineFilter = .any,
        sort: SortKey = .userID,
        descending: Bool = false,
        limit: Int = UserQuery.defaultLimit
    ) {
        self.filters = filters
        self.online = online
        self.sort = sort
        self.descending = descending
        self.limit = limit
    }

    /// The limit the server applies.
    public var effectiveLimit: Int { min(max(limit, 1), Self.maximumLimit) }
}

/// One page of a directory search.
public struct UserSearchResult: Hashable, Sendable {
    public var users: [UserInfo]
    /// True when more users matched than ``users`` holds.
    public var truncated: Bool

    public init(users: [UserInfo], truncated: Bool) {
        self.users = users
        self.truncated = truncated
    }
}
