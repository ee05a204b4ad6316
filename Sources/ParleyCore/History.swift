public import struct Foundation.Date

/// What a history entry holds.
public enum HistoryKind: String, Hashable, Sendable, Codable, CaseIterable {
    /// A text message: the body is UTF-8 text, searchable with ``HistoryQuery/text``.
    case text
    /// A binary message: opaque bytes, never matched by a text filter.
    case binary
    /// A file transfer: the body is the file's description (its name), searchable like text.
    case file
}

/// A structured search of message history: every filter given must hold. Never raw SQL.
///
/// Used alike by `ParleyClient.searchHistory(_:)` (the server's history of the user's own
/// conversations), `ParleyNode.searchHistory(_:)` (the node's local history) and
/// `ParleyServer.searchHistory(_:)` (everything the server keeps).
///
/// Results come in the order the history recorded them (the order the server accepted the
/// messages; on a node, the order it sent and received them), newest first unless
/// ``order`` says otherwise, one page of at most ``limit`` entries at a time; pass the page's
/// ``HistoryPage/nextCursor`` as ``cursor`` for the next page.
public struct HistoryQuery: Hashable, Sendable, Codable {
    /// How ``TextFilter/text`` must match a message's text. Matching ignores case and
    /// diacritics ("Éte" matches "ete").
    public enum TextMatch: String, Hashable, Sendable, Codable, CaseIterable {
        /// The text holds these words, in this order, as whole words (a full-text search:
        /// punctuation and spacing between the words do not matter).
        case contains
        /// The text starts with this text.
        case prefix
        /// The text is this text.
        case exact
    }

    /// A condition on the text of text messages and the description of files.
    public struct TextFilter: Hashable, Sendable, Codable {
        public var text: String
        public var match: TextMatch

        public init(_ match: TextMatch, _ text: String) {
            self.match = match
            self.text = text
        }
    }

    /// Whether the recipient has acknowledged the message.
    public enum DeliveryFilter: String, Hashable, Sendable, Codable, CaseIterable {
        case any
        case delivered
        case undelivered
    }

    /// Which way results are sorted.
    public enum Order: String, Hashable, Sendable, Codable, CaseIterable {
        case newestFirst
        case oldestFirst
    }

    /// Messages sent by one of these users; empty: by anyone.
    public var senders: Set<UserID>
    /// Messages to one of these users; empty: to anyone.
    public var recipients: Set<UserID>
    /// Messages of a conversation with one of these users: sent by or to them. Empty: any.
    public var conversationWith: Set<UserID>
    /// Sent at or after this time.
    public var sentAfter: Date?
    /// Sent before this time.
    public var sentBefore: Date?
    /// Delivered (acknowledged) at or after this time; implies delivered.
    public var deliveredAfter: Date?
    /// Delivered before this time; implies delivered.
    public var deliveredBefore: Date?
    /// A condition on the text; nil: none.
    public var text: TextFilter?
    /// Entries of these kinds; empty: every kind.
    public var kinds: Set<HistoryKind>
    public var delivery: DeliveryFilter
    public var order: Order
    /// How many entries a page holds at most; clamped to 1...``maximumLimit``.
    public var limit: Int
    /// Where the page starts: a ``HistoryPage/nextCursor`` of an earlier page of the same
    /// query; nil: the first page.
    public var cursor: String?

    public static let defaultLimit = 50
    public static let maximumLimit = 1000
    /// The longest text filter, in UTF-8 bytes.
    public static let maximumTextBytes = 1024
    /// The most users each of ``senders``, ``recipients`` and ``conversationWith`` may hold.
    public static let maximumUsers = 256

    public init(
        senders: Set<UserID> = [],
        recipients: Set<UserID> = [],
        conversationWith: Set<UserID> = [],
        sentAfter: Date? = nil,
        sentBefore: Date? = nil,
        deliveredAfter: Date? = nil,
        deliveredBefore: Date? = nil,
        text: TextFilter? = nil,
        kinds: Set<HistoryKind> = [],
        delivery: DeliveryFilter = .any,
        order: Order = .newestFirst,
        limit: Int = HistoryQuery.defaultLimit,
        cursor: String? = nil
    ) {
        self.senders = senders
        self.recipients = recipients
        self.conversationWith = conversationWith
        self.sentAfter = sentAfter
        self.sentBefore = sentBefore
        self.deliveredAfter = deliveredAfter
        self.deliveredBefore = deliveredBefore
        self.text = text
        self.kinds = kinds
        self.delivery = delivery
        self.order = order
        self.limit = limit
        self.cursor = cursor
    }

    /// The query with ``limit`` clamped to 1...``maximumLimit``.
    public var clamped: HistoryQuery {
        var query = self
        query.limit = min(max(limit, 1), Self.maximumLimit)
        return query
    }

    /// Checks the sizes the protocol allows.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidRequest`` for an empty or
    ///   too long text filter or too many users in a filter.
    public func validate() throws(ParleyError) {
        if let text {
            guard !text.text.isEmpty, text.text.utf8.count <= Self.maximumTextBytes else {
                throw ParleyError(
                    code: .invalidRequest,
                    message: "a history text filter must be 1 to \(Self.maximumTextBytes) bytes"
                )
            }
        }
        for users in [senders, recipients, conversationWith] where users.count > Self.maximumUsers {
            throw ParleyError(
                code: .invalidRequest, message: "a history filter names at most \(Self.maximumUsers) users")
        }
    }
}

/// One message as the history keeps it: one entry per recipient.
public struct HistoryEntry: Hashable, Sendable {
    /// How a node sent or received the message (nil in the server's history).
    public enum Route: String, Hashable, Sendable, Codable, CaseIterable {
        case direct
        case server
        case queued
    }

    public var messageID: MessageID
    public var sender: UserID
    public var recipient: UserID
    public var kind: HistoryKind
    /// The body: UTF-8 text (``HistoryKind/text``), the bytes (``HistoryKind/binary``) or the
    /// file's description (``HistoryKind/file``).
    public var body: [UInt8]
    /// The sender's clock when it sent the message.
    public var sentAt: Date
    /// When the recipient acknowledged it; nil while it is not delivered (or not known to be).
    public var deliveredAt: Date?
    /// On a node: the route it took (for a message still in the outbox, ``Route/queued``).
    public var route: Route?

    public init(
        messageID: MessageID,
        sender: UserID,
        recipient: UserID,
        kind: HistoryKind,
        body: [UInt8],
        sentAt: Date,
        deliveredAt: Date? = nil,
        route: Route? = nil
    ) {
        self.messageID = messageID
        self.sender = sender
        self.recipient = recipient
        self.kind = kind
        self.body = body
        self.sentAt = sentAt
        self.deliveredAt = deliveredAt
        self.route = route
    }

    /// The text of a text message or the description of a file; nil for binary messages.
    public var text: String? {
        kind == .binary ? nil : String(decoding: body, as: UTF8.self)
    }
}

/// One page of a history search.
public struct HistoryPage: Hashable, Sendable {
    public var entries: [HistoryEntry]
    /// Pass it as ``HistoryQuery/cursor`` (with the same query) for the next page; nil when
    /// there is no more.
    public var nextCursor: String?

    public init(entries: [HistoryEntry], nextCursor: String?) {
        self.entries = entries
        self.nextCursor = nextCursor
    }
}
