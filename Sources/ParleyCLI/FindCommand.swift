import ArgumentParser
import Logging
import ParleyClient
import ParleyCore

/// `parley find`: a directory search, one user per line.
struct FindCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Search the user directory; prints one user per line.",
        discussion: """
            Filters: --name-prefix X, and any number of --field F --value V pairs with an optional \
            --match each (exact, prefix or contains; default exact). Fields: \
            \(UserField.allCases.map(\.rawValue).joined(separator: ", ")). Every filter must hold; \
            matching ignores case. --name NAME instead lists the IDs of users with exactly that name.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions
    @OptionGroup var credentials: OptionalCredentialOptions

    @Option(name: .customLong("name-prefix"), help: "Users whose user name starts with this.")
    var namePrefix: String?

    @Option(name: .customLong("field"), help: "A field to filter on (repeatable).", transform: FindCommand.field)
    var fields: [UserField] = []

    @Option(name: .customLong("match"), help: "How the matching --value compares: exact, prefix or contains.")
    var matches: [MatchArgument] = []

    @Option(name: .customLong("value"), help: "The value for the matching --field.")
    var values: [String] = []

    @Flag(help: "Only users logged on right now.")
    var online = false

    @Flag(help: "Only users not logged on right now.")
    var offline = false

    @Option(help: "Sort by user-id (default) or a field.", transform: FindCommand.sortKey)
    var sort: UserQuery.SortKey = .userID

    @Flag(help: "Sort in descending order.")
    var descending = false

    @Option(help: "Print at most this many users (1...\(UserQuery.maximumLimit)).")
    var limit = UserQuery.defaultLimit

    @Option(help: "List the IDs of the users with exactly this user name instead.")
    var name: String?

    func validate() throws {
        guard fields.count == values.count else {
            throw ValidationError("give one --value for each --field")
        }
        guard matches.isEmpty || matches.count == fields.count else {
            throw ValidationError("give either no --match or one for each --field")
        }
        guard !(online && offline) else { throw ValidationError("--online and --offline exclude each other") }
        guard (1...UserQuery.maximumLimit).contains(limit) else {
            throw ValidationError("--limit must be 1...\(UserQuery.maximumLimit)")
        }
        if name != nil, namePrefix != nil || !fields.isEmpty || online || offline {
            throw ValidationError("--name takes no other filters")
        }
    }

    func run() async throws {
        let out = Output(json: output.json)
        let configuration = try connection.clientConfiguration()
        let logger = Logger(label: "parley.client")
        if let name {
            let ids = try await withParleyClient(configuration: configuration, logger: logger) { [credentials] client in
                try await credentials.logOn(client)
                return try await client.findUserIDs(named: name)
            }
            for id in ids {
                try out.emit(UserIDRecord(userID: id.rawValue), text: "\(id)")
            }
            return
        }
        let query = self.query
        let result = try await withParleyClient(configuration: configuration, logger: logger) { [credentials] client in
            try await credentials.logOn(client)
            return try await client.findUsers(query)
        }
        for user in result.users {
            let record = UserRecord(user)
            try out.emit(record, text: record.line)
        }
        if result.truncated {
            Output.note("more users match than --limit \(limit) shows")
        }
    }

    var query: UserQuery {
        var filters: [UserQuery.Filter] = []
        if let namePrefix { filters.append(.init(.userName, .prefix, namePrefix)) }
        for (index, field) in fields.enumerated() {
            let match = matches.isEmpty ? .exact : matches[index].match
            filters.append(.init(field, match, values[index]))
        }
        return UserQuery(
            filters: filters,
            online: online ? .online : offline ? .offline : .any,
            sort: sort,
            descending: descending,
            limit: limit
        )
    }

    @Sendable
    static func field(_ text: String) throws -> UserField {
        guard let field = UserField(rawValue: text) else {
            let names = UserField.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("\"\(text)\" is not a field; use one of: \(names)")
        }
        return field
    }

    @Sendable
    static func sortKey(_ text: String) throws -> UserQuery.SortKey {
        if text == "user-id" { return .userID }
        guard let field = UserField(rawValue: text) else {
            let names = (["user-id"] + UserField.allCases.map(\.rawValue)).joined(separator: ", ")
            throw ValidationError("cannot sort by \"\(text)\"; use one of: \(names)")
        }
        return .field(field)
    }
}

/// `--match` values.
enum MatchArgument: String, ExpressibleByArgument, CaseIterable {
    case exact, prefix, contains

    var match: UserQuery.Match {
        switch self {
        case .exact: .exact
        case .prefix: .prefix
        case .contains: .contains
        }
    }
}

/// `{"userID":N}`
struct UserIDRecord: Encodable {
    var userID: UInt32
}
