import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore

/// `parley contacts list|add|update|remove`: the logged-on user's contact list, kept by the server.
struct ContactsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contacts",
        abstract: "List or change your contact list (kept by the server).",
        subcommands: [List.self, Add.self, Update.self, Remove.self]
    )

    /// The options every contacts subcommand takes.
    struct Common: ParsableArguments {
        @OptionGroup var output: OutputOptions
        @OptionGroup var connection: ServerOptions
        @OptionGroup var credentials: CredentialOptions

        /// Prints one contact as `contacts list` does.
        func print(_ contact: Contact) throws {
            let record = ContactRecord(contact)
            try Output(json: output.json).emit(record, text: record.line)
        }

        /// Logs on, runs `body`, logs off.
        func withLoggedOnClient<T: Sendable>(
            _ body: @escaping @Sendable (ParleyClient) async throws -> T
        ) async throws -> T {
            let credentials = self.credentials
            return try await withParleyClient(
                configuration: try connection.clientConfiguration(),
                logger: Logger(label: "parley.client")
            ) { client in
                _ = try await client.logOn(userID: credentials.user, password: credentials.password)
                return try await body(client)
            }
        }
    }

    /// How a contact's name is shown: `--display RULE` or `--name NAME`.
    struct DisplayOptions: ParsableArguments {
        @Option(help: "Show the contact by user-name, first-name, last-name or full-name (default user-name).")
        var display: String?

        @Option(help: "Show the contact by this name instead (1 to 64 characters).")
        var name: String?

        func validate() throws {
            if display != nil && name != nil { throw ValidationError("give --display or --name, not both") }
            _ = try rule()
        }

        /// The rule asked for; nil when neither option was given.
        func rule() throws -> ContactDisplayName? {
            if let name { return .custom(name) }
            switch display {
            case nil: return nil
            case "user-name": return .userName
            case "first-name": return .firstName
            case "last-name": return .lastName
            case "full-name": return .fullName
            case let other?:
                throw ValidationError("--display must be user-name, first-name, last-name or full-name, not \(other)")
            }
        }
    }

    struct List: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print your contacts: \"1001 Bob Brown (bob) full-name\", one per line.",
            discussion: """
                With --json one {"event":"contact","userID":...,"name":...,"userName":...,"display":...,\\
                "addedAt":...} per contact. Prints "no contacts" (nothing with --json) for an empty list.
                """
        )
        static let defaultLogLevel = Logger.Level.warning

        @OptionGroup var common: Common

        var output: OutputOptions { common.output }

        func run() async throws {
            let out = Output(json: common.output.json)
            try ContactRecord.printList(
                try await common.withLoggedOnClient { try await $0.contacts().contacts }, to: out)
        }
    }

    struct Add: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a user to your contacts (or change how an existing contact is shown).",
            discussion: "Prints the contact as `contacts list` does. Exits 1 for an unknown user or a full list."
        )
        static let defaultLogLevel = Logger.Level.warning

        @OptionGroup var common: Common

        var output: OutputOptions { common.output }
        @OptionGroup var display: DisplayOptions

        @Argument(help: "The user ID to add.", transform: UserID.argument)
        var target: UserID

        func run() async throws {
            let (target, rule) = (self.target, try display.rule() ?? .userName)
            try common.print(try await common.withLoggedOnClient { try await $0.addContact(target, displayName: rule) })
        }
    }

    struct Update: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change how a contact is shown (--display RULE or --name NAME).",
            discussion: "Prints the contact as `contacts list` does. Exits 1 if the user is not a contact."
        )
        static let defaultLogLevel = Logger.Level.warning

        @OptionGroup var common: Common

        var output: OutputOptions { common.output }
        @OptionGroup var display: DisplayOptions

        @Argument(help: "The contact's user ID.", transform: UserID.argument)
        var target: UserID

        func validate() throws {
            guard try display.rule() != nil else { throw ValidationError("give --display RULE or --name NAME") }
        }

        func run() async throws {
            let (target, rule) = (self.target, try display.rule() ?? .userName)
            try common.print(
                try await common.withLoggedOnClient { try await $0.updateContact(target, displayName: rule) })
        }
    }

    struct Remove: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a user from your contacts.",
            discussion: "Prints \"removed ID\". Exits 1 if the user is not a contact."
        )
        static let defaultLogLevel = Logger.Level.warning

        @OptionGroup var common: Common

        var output: OutputOptions { common.output }

        @Argument(help: "The contact's user ID.", transform: UserID.argument)
        var target: UserID

        func run() async throws {
            let out = Output(json: common.output.json)
            let target = self.target
            try await common.withLoggedOnClient { try await $0.removeContact(target) }
            try out.emit(RemovedContactRecord(userID: target.rawValue), text: "removed \(target)")
        }
    }
}

/// `parley status online|away|busy [--text T]`: the presence shown to the users who have you in
/// their contacts, now and at later logons.
struct StatusCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Set the presence your contacts see while you are online: online, away or busy.",
        discussion: """
            The state (and --text) is kept by the server and shown at every later logon until \
            changed. Prints "status away (at lunch)".
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var common: ContactsCommand.Common

    var output: OutputOptions { common.output }

    @Argument(help: "online, away or busy.")
    var state: String

    @Option(help: "A status text (at most 256 bytes).")
    var text: String = ""

    func validate() throws {
        guard let state = PresenceState(rawValue: state), state != .offline else {
            throw ValidationError("the state must be online, away or busy")
        }
    }

    func run() async throws {
        let out = Output(json: common.output.json)
        let presence = Presence(state: PresenceState(rawValue: state) ?? .online, text: text)
        try await common.withLoggedOnClient { try await $0.setPresence(presence.state, text: presence.text) }
        let record = PresenceRecord(userID: common.credentials.user, presence: presence, snapshot: false)
        try out.emit(record, text: "status \(presence)")
    }
}

/// `parley watch`: stays logged on and prints contacts' presence, then every change.
struct WatchCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Stay logged on and print each contact's presence, then every change as it happens.",
        discussion: """
            Lines: "1001 bob away (at lunch)". After each logon (also after a reconnect) every \
            contact's current presence is printed, then each change. Messages that arrive meanwhile \
            are printed as `receive` prints them (they are acknowledged). With --json one \
            {"event":"presence","userID":...,"state":...,"text":...,"snapshot":...} per line. Runs \
            until interrupted or --timeout seconds.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var common: ContactsCommand.Common

    var output: OutputOptions { common.output }

    @Option(help: "Exit after this many seconds.")
    var timeout: Double?

    func run() async throws {
        let out = Output(json: common.output.json)
        let deadline = ContinuousClock.Instant.after(seconds: timeout)
        try await common.withLoggedOnClient { client in
            try await withDeadline(deadline) {
                var names: [UserID: String] = [:]
                for await event in client.events {
                    switch event {
                    case .presence(let update):
                        if let contacts = update.contacts {
                            names = Dictionary(contacts.map { ($0.userID, $0.name) }, uniquingKeysWith: { $1 })
                        }
                        for (user, presence) in update.presences.sorted(by: { $0.key < $1.key }) {
                            let record = PresenceRecord(userID: user, presence: presence, snapshot: update.isSnapshot)
                            try out.emit(record, text: "\(user) \(names[user] ?? "") \(presence)")
                        }
                    case .message(let message):
                        let record = MessageRecord(message)
                        try out.emit(record, text: record.line)
                    case .sessionReplaced(let reason):
                        throw ParleyError(code: .sessionReplaced, message: reason)
                    default:
                        continue
                    }
                }
            }
        }
    }
}

/// A contact as `parley contacts` prints it.
struct ContactRecord: Encodable {
    var event = "contact"
    var userID: UInt32
    var name: String
    var userName: String
    var display: String
    var addedAt: Date

    init(_ contact: Contact) {
        userID = contact.userID.rawValue
        name = contact.name
        userName = contact.info.userName
        display = contact.displayName.description
        addedAt = contact.addedAt
    }

    /// "1001 Bob Brown (bob) full-name"
    var line: String { "\(userID) \(name) (\(userName)) \(display)" }

    /// Prints a contact list, one contact per line ("no contacts" for none, nothing with --json).
    static func printList(_ contacts: [Contact], to out: Output) throws {
        if contacts.isEmpty && !out.isJSON { try out.line("no contacts") }
        for contact in contacts {
            let record = ContactRecord(contact)
            try out.emit(record, text: record.line)
        }
    }
}

struct RemovedContactRecord: Encodable {
    var event = "removed"
    var userID: UInt32
}

/// A presence as `parley status` and `parley watch` print it.
struct PresenceRecord: Encodable {
    var event = "presence"
    var userID: UInt32
    var state: String
    var text: String
    var snapshot: Bool

    init(userID: UserID, presence: Presence, snapshot: Bool) {
        self.userID = userID.rawValue
        state = presence.state.rawValue
        text = presence.text
        self.snapshot = snapshot
    }
}
