import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore
import Synchronization

/// `parley chat`: an interactive, line-based client that also works when driven by a pipe.
struct ChatCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat line by line: read commands and text from standard input, print incoming messages.",
        discussion: """
            Input lines: "/to ID[,ID...]" chooses the recipients, "/who" lists your contacts with \
            their presence (who is online when you have no contacts), "/quit" leaves; any other line \
            is sent as text to the chosen recipients. Incoming messages print as "[from 1001] hello", \
            a contact's presence change as "* 1002 Bob Brown is away (lunch)". Ends at /quit or at \
            the end of input, once what was read is sent. \
            Failed recipients are reported on standard error (with --json as {"event":"result",...} \
            lines on standard output).
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions
    @OptionGroup var credentials: CredentialOptions

    func run() async throws {
        let out = Output(json: output.json)
        let credentials = self.credentials
        try await withParleyClient(
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client")
        ) { client in
            let logon = try await client.logOn(userID: credentials.user, password: credentials.password)
            if isatty(STDIN_FILENO) != 0 {
                Output.note(
                    "logged on as \(logon.user.userID) (\(logon.user.userName)); "
                        + "/to ID[,ID] chooses recipients, /who lists who is online, /quit leaves"
                )
            }
            let presences = PresenceBoard()
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await Self.printEvents(client.events, presences: presences, out: out) }
                tasks.addTask { try await Self.readCommands(client: client, presences: presences, out: out) }
                // Whichever ends first (end of input, or the client stopped) ends the chat.
                try await tasks.next()
                tasks.cancelAll()
                try await tasks.waitForAll()
            }
        }
    }

    private static func readCommands(client: ParleyClient, presences: PresenceBoard, out: Output) async throws {
        let input = StandardInputLines()
        var recipients: [UserID] = []
        while let line = await input.next() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/quit" { return }
            if text == "/who" {
                try await who(client: client, presences: presences.current, out: out)
            } else if text == "/to" || text.hasPrefix("/to ") {
                let list = text.dropFirst(3).trimmingCharacters(in: .whitespaces)
                do {
                    recipients = try SendCommand.recipients(list)
                } catch {
                    Output.note("\(error)")
                    continue
                }
                if recipients.isEmpty { Output.note("/to needs user IDs: /to 1001,1002") }
            } else if text.hasPrefix("/") && !text.hasPrefix("//") {
                Output.note("unknown command \(text); use /to ID[,ID], /who or /quit (start text with // to send a /)")
            } else if recipients.isEmpty {
                Output.note("choose recipients first: /to ID[,ID]")
            } else {
                let message = text.hasPrefix("//") ? String(text.dropFirst()) : text
                try await send(message, to: recipients, client: client, out: out)
            }
        }
    }

    private static func send(_ text: String, to recipients: [UserID], client: ParleyClient, out: Output) async throws {
        let id = MessageID.random()
        let results: [DeliveryResult]
        do {
            results = try await client.send(.text(text), to: recipients, id: id)
        } catch {
            // One failed message does not end the chat.
            Output.note("error: the message was not sent: \(error)")
            return
        }
        for result in results {
            let record = DeliveryRecord(result, messageID: id)
            if out.isJSON {
                try out.json(record)
            } else if !result.isAccepted {
                Output.note(record.line)
            }
        }
    }

    /// Your contacts with their presence; who is online when you have no contacts.
    private static func who(client: ParleyClient, presences: [UserID: Presence], out: Output) async throws {
        let contacts: [Contact]
        do {
            contacts = try await client.contacts().contacts
        } catch {
            Output.note("error: /who failed: \(error)")
            return
        }
        if !contacts.isEmpty {
            let records = contacts.map { ContactPresenceRecord($0, presence: presences[$0.userID] ?? .offline) }
            try out.emit(WhoRecord(contacts: records), text: records.map(\.line).joined(separator: "\n"))
            return
        }
        let found: UserSearchResult
        do {
            found = try await client.findUsers(UserQuery(online: .online, limit: UserQuery.maximumLimit))
        } catch {
            Output.note("error: /who failed: \(error)")
            return
        }
        let users = found.users.map(UserRecord.init)
        let text = users.isEmpty ? "nobody is online" : users.map(\.line).joined(separator: "\n")
        try out.emit(WhoRecord(users: users), text: text)
    }

    private static func printEvents(_ events: ParleyClientEvents, presences: PresenceBoard, out: Output) async throws {
        var names: [UserID: String] = [:]
        for await event in events {
            switch event {
            case .message(let message):
                let record = MessageRecord(message)
                try out.emit(record, text: record.chatLine)
            case .serverShuttingDown(let reason):
                Output.note("the server is shutting down (\(reason)); reconnecting when it is back")
            case .sessionReplaced(let reason):
                throw ParleyError(code: .sessionReplaced, message: reason)
            case .connectionStateChanged(.disconnected(let reason)):
                Output.note("disconnected (\(reason.map(String.init(describing:)) ?? "closed")); reconnecting")
            case .presence(let update):
                if let contacts = update.contacts {
                    names = Dictionary(contacts.map { ($0.userID, $0.name) }, uniquingKeysWith: { $1 })
                }
                presences.merge(update.presences)
                // The snapshot at logon is what /who shows; changes print as they happen.
                guard !update.isSnapshot else { continue }
                for (user, presence) in update.presences.sorted(by: { $0.key < $1.key }) {
                    let record = PresenceRecord(userID: user, presence: presence, snapshot: false)
                    let name = names[user].map { " \($0)" } ?? ""
                    try out.emit(record, text: "* \(user)\(name) is \(presence)")
                }
            case .connectionStateChanged, .deliveryReceipt, .command, .transferOffered, .transferStatus:
                continue
            }
        }
    }
}

/// The latest presence of each contact, as the chat's events told it.
final class PresenceBoard: Sendable {
    private let presences = Mutex<[UserID: Presence]>([:])

    var current: [UserID: Presence] { presences.withLock { $0 } }

    func merge(_ update: [UserID: Presence]) {
        presences.withLock { $0.merge(update) { $1 } }
    }
}

/// `{"event":"who","users":[...]}` (who is online), or `{"event":"who","contacts":[...]}`.
struct WhoRecord: Encodable {
    var event = "who"
    var users: [UserRecord]?
    var contacts: [ContactPresenceRecord]?

    init(users: [UserRecord]) { self.users = users }
    init(contacts: [ContactPresenceRecord]) { self.contacts = contacts }
}

/// A contact and its presence, as `/who` in `parley chat` shows it.
struct ContactPresenceRecord: Encodable {
    var userID: UInt32
    var name: String
    var state: String
    var text: String

    init(_ contact: Contact, presence: Presence) {
        userID = contact.userID.rawValue
        name = contact.name
        state = presence.state.rawValue
        text = presence.text
    }

    /// "1002 Bob Brown away (lunch)"
    var line: String { "\(userID) \(name) \(state)" + (text.isEmpty ? "" : " (\(text))") }
}
