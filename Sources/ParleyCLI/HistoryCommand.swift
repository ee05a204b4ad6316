import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyNode

/// `parley history`: searches message history, one entry per line: the server's history of the
/// user's conversations (--server, --user, --password), or a node's own (--data DIR).
struct HistoryCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Search message history; prints one message per line, newest first.",
        discussion: """
            Through the server (--server, --user, --password): the messages the user sent or \
            received, if the server keeps history (parley server --history-days N). As a node \
            (--data DIR): the node's own history of what it sent and received, on every route, \
            also while that node runs. Every filter given must hold; text filters ignore case and \
            diacritics (--contains looks for whole words, in order). Times (--since, --until, \
            --delivered-since, --delivered-until) are ISO 8601 ("2026-12-03T14:00:00Z"), a date \
            ("2026-12-03", UTC), or a time ago ("90m", "2h", "7d"). One page is printed (--limit); \
            when more match, the cursor for the next page is printed (stderr; with --json, a last \
            line {"nextCursor":...}): pass it with --after, or give --all for every page.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions

    @Option(
        name: .customLong("server"),
        help: "The server's address: HOST:PORT (environment: PARLEY_SERVER). Required without --data."
    )
    var serverOption: String?

    var server: String? { EnvironmentCredentials.server(serverOption) }

    @Option(help: "Connection attempts and time limits (default local).")
    var retry: RetryPreset = .local

    @OptionGroup var transport: TransportOptions
    @OptionGroup var credentials: OptionalCredentialOptions

    @Option(name: .customLong("data"), help: "Search the history of the LAN node kept in this directory instead.")
    var dataDirectory: String?

    @Option(
        name: .customLong("with"), help: "The conversation with this user: sent by or to it (repeatable).",
        transform: UserID.argument)
    var with: [UserID] = []

    @Option(name: .customLong("from"), help: "Sent by this user (repeatable).", transform: UserID.argument)
    var from: [UserID] = []

    @Option(name: .customLong("to"), help: "Sent to this user (repeatable).", transform: UserID.argument)
    var to: [UserID] = []

    @Option(help: "The text holds these words, in order (full-text search).")
    var contains: String?

    @Option(help: "The text starts with this.")
    var prefix: String?

    @Option(help: "The text is exactly this (ignoring case and diacritics).")
    var exact: String?

    @Option(help: "Sent at or after this time.", transform: HistoryCommand.time)
    var since: Date?

    @Option(help: "Sent before this time.", transform: HistoryCommand.time)
    var until: Date?

    @Option(
        name: .customLong("delivered-since"), help: "Delivered at or after this time.", transform: HistoryCommand.time)
    var deliveredSince: Date?

    @Option(name: .customLong("delivered-until"), help: "Delivered before this time.", transform: HistoryCommand.time)
    var deliveredUntil: Date?

    @Option(help: "Only this kind: text, binary or file (repeatable).", transform: HistoryCommand.kind)
    var kind: [HistoryKind] = []

    @Flag(help: "Only messages their recipient acknowledged.")
    var delivered = false

    @Flag(help: "Only messages not (yet) acknowledged.")
    var undelivered = false

    @Flag(name: .customLong("oldest-first"), help: "Oldest first (default: newest first).")
    var oldestFirst = false

    @Option(help: "At most this many messages per page (1...\(HistoryQuery.maximumLimit)).")
    var limit = HistoryQuery.defaultLimit

    @Option(help: "Start after this cursor (printed by an earlier page of the same search).")
    var after: String?

    @Flag(help: "Print every page, not only the first.")
    var all = false

    func validate() throws {
        guard [contains, prefix, exact].compactMap({ $0 }).count <= 1 else {
            throw ValidationError("give at most one of --contains, --prefix and --exact")
        }
        guard !(delivered && undelivered) else {
            throw ValidationError("--delivered and --undelivered exclude each other")
        }
        guard (1...HistoryQuery.maximumLimit).contains(limit) else {
            throw ValidationError("--limit must be 1...\(HistoryQuery.maximumLimit)")
        }
        if dataDirectory == nil {
            guard server != nil else {
                throw ValidationError("give --server HOST:PORT with --user, or --data DIR for a node's history")
            }
            guard credentials.user != nil else { throw ValidationError("searching the server's history needs --user") }
        }
        do {
            try query.validate()
        } catch {
            throw ValidationError(error.message)
        }
    }

    var query: HistoryQuery {
        var text: HistoryQuery.TextFilter?
        if let contains { text = .init(.contains, contains) }
        if let prefix { text = .init(.prefix, prefix) }
        if let exact { text = .init(.exact, exact) }
        return HistoryQuery(
            senders: Set(from),
            recipients: Set(to),
            conversationWith: Set(with),
            sentAfter: since,
            sentBefore: until,
            deliveredAfter: deliveredSince,
            deliveredBefore: deliveredUntil,
            text: text,
            kinds: Set(kind),
            delivery: delivered ? .delivered : undelivered ? .undelivered : .any,
            order: oldestFirst ? .oldestFirst : .newestFirst,
            limit: limit,
            cursor: after
        )
    }

    func run() async throws {
        let out = Output(json: output.json)
        let all = self.all
        if let dataDirectory {
            try Self.page(through: query, all: all, out: out) { query throws(ParleyError) in
                try ParleyNode.searchHistory(dataDirectory: dataDirectory, query)
            }
            return
        }
        guard let server, let user = credentials.user, let password = credentials.password else {
            throw ValidationError("searching the server's history needs --server, --user and --password")
        }
        var configuration = try ParleyClient.Configuration(server: server, retry: retry.policy)
        configuration.security = try transport.security(defaultKnownServers: nil)
        let first = query
        try await withParleyClient(configuration: configuration, logger: Logger(label: "parley.client")) { client in
            try await client.logOn(userID: user, password: password)
            var query = first
            while true {
                let page = try await client.searchHistory(query)
                guard let next = try Self.emit(page, out: out, all: all) else { return }
                query.cursor = next
            }
        }
    }

    /// Prints pages of a local search.
    private static func page(
        through query: HistoryQuery,
        all: Bool,
        out: Output,
        _ search: (HistoryQuery) throws(ParleyError) -> HistoryPage
    ) throws {
        var query = query
        while true {
            guard let next = try emit(search(query), out: out, all: all) else { return }
            query.cursor = next
        }
    }

    /// Prints a page; returns the cursor to go on with, or nil when done.
    private static func emit(_ page: HistoryPage, out: Output, all: Bool) throws -> String? {
        for entry in page.entries {
            let record = HistoryRecord(entry)
            try out.emit(record, text: record.line)
        }
        guard let next = page.nextCursor else { return nil }
        if all { return next }
        try out.emitJSON(["nextCursor": next])
        if !out.isJSON { Output.note("more: --after \(next)") }
        return nil
    }

    @Sendable
    static func kind(_ text: String) throws -> HistoryKind {
        guard let kind = HistoryKind(rawValue: text) else {
            throw ValidationError("\"\(text)\" is not a kind: use text, binary or file")
        }
        return kind
    }

    @Sendable
    static func time(_ text: String) throws -> Date {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        if let date = try? Date(text + "T00:00:00Z", strategy: .iso8601) { return date }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let unit = text.last.flatMap({ units[$0] }), let amount = Double(text.dropLast()), amount >= 0 {
            return Date().addingTimeInterval(-amount * unit)
        }
        throw ValidationError(
            "\"\(text)\" is not a time: give ISO 8601 (2026-12-03T14:00:00Z), a date (2026-12-03) or a time ago (90m, 2h, 7d)"
        )
    }
}

/// One history entry as `parley history` prints it.
struct HistoryRecord: Encodable {
    var id: UInt64
    var sender: UInt32
    var recipient: UInt32
    var kind: String
    var text: String?
    var base64: String?
    var sentAt: Date
    var deliveredAt: Date?
    var route: String?

    init(_ entry: HistoryEntry) {
        id = entry.messageID.rawValue
        sender = entry.sender.rawValue
        recipient = entry.recipient.rawValue
        kind = entry.kind.rawValue
        text = entry.text
        base64 = entry.kind == .binary ? Data(entry.body).base64EncodedString() : nil
        sentAt = entry.sentAt
        deliveredAt = entry.deliveredAt
        route = entry.route?.rawValue
    }

    /// "2026-12-03T14:00:00.000Z 1000 -> 1001 [8812...] delivered hello"
    var line: String {
        let state = deliveredAt.map { "delivered \(Timestamp.format($0))" } ?? "undelivered"
        let via = route.map { " via \($0)" } ?? ""
        let content = kind == "file" ? "file: " + (text ?? "") : MessageRecord.content(text: text, base64: base64)
        return "\(Timestamp.format(sentAt)) \(sender) -> \(recipient) [\(id)] \(state)\(via) \(content)"
    }
}
