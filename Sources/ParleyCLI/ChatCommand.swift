import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore

/// `parley chat`: an interactive, line-based client that also works when driven by a pipe.
struct ChatCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat line by line: read commands and text from standard input, print incoming messages.",
        discussion: """
            Input lines: "/to ID[,ID...]" chooses the recipients, "/who" lists who is online, "/quit" \
            leaves; any other line is sent as text to the chosen recipients. Incoming messages print \
            as "[from 1001] hello". Ends at /quit or at the end of input, once what was read is sent. \
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
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await Self.printEvents(client.events, out: out) }
                tasks.addTask { try await Self.readCommands(client: client, out: out) }
                // Whichever ends first (end of input, or the client stopped) ends the chat.
                try await tasks.next()
                tasks.cancelAll()
                try await tasks.waitForAll()
            }
        }
    }

    private static func readCommands(client: ParleyClient, out: Output) async throws {
        let input = StandardInputLines()
        var recipients: [UserID] = []
        while let line = await input.next() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/quit" { return }
            if text == "/who" {
                try await who(client: client, out: out)
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

    private static func who(client: ParleyClient, out: Output) async throws {
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

    private static func printEvents(_ events: ParleyClientEvents, out: Output) async throws {
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
            case .connectionStateChanged, .deliveryReceipt, .presence, .command:
                continue
            }
        }
    }
}

/// `{"event":"who","users":[...]}`
struct WhoRecord: Encodable {
    var event = "who"
    var users: [UserRecord]
}
