import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleyServer

/// `parley admin ...`: a running server's users and sessions, over its admin socket
/// (docs/ADMIN.md), never over the network.
struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Administer a running server through its admin socket (as the server's user or root).",
        discussion: """
            The server listens on a Unix socket, by default admin.sock in its data directory, mode \
            0600: only the server's own user and root can use it. Give --socket PATH or --data DIR.
            """,
        subcommands: [
            Users.self, Sessions.self, Counts.self, Kick.self, DeleteUser.self, ReserveID.self, LastSeen.self,
            Contacts.self, Broadcast.self, Files.self, DeleteFile.self,
        ]
    )

    @Option(help: "The server's admin socket (default: admin.sock in --data).")
    var socket: String?

    @Option(name: .customLong("data"), help: "The server's data directory (environment: PARLEY_DATA).")
    var dataDirectory: String?

    func validate() throws {
        if socket != nil && dataDirectory != nil { throw ValidationError("give --socket or --data, not both") }
    }

    /// The socket's path.
    func socketPath() throws -> String {
        if let socket { return socket }
        let data = dataDirectory ?? ProcessInfo.processInfo.environment["PARLEY_DATA"]
        guard let data, !data.isEmpty else {
            throw ValidationError("give --socket PATH or --data DIR (the server's data directory)")
        }
        return URL(fileURLWithPath: data).appendingPathComponent("admin.sock").path
    }

    /// Sends `request` and decodes the answer's result.
    func call<Result: Codable & Sendable>(_ request: AdminRequest, as _: Result.Type) async throws -> Result {
        let answer = try await Self.exchange(request, socket: try socketPath())
        let reply: AdminReply<Result>
        do {
            reply = try AdminRequest.makeDecoder().decode(AdminReply<Result>.self, from: Data(answer))
        } catch {
            throw CommandFailure(message: "the admin socket answered something unreadable: \(error)")
        }
        return try reply.get()
    }

    /// One request line out, one answer line back.
    private static func exchange(_ request: AdminRequest, socket path: String) async throws -> [UInt8] {
        let line = Array(try AdminRequest.makeEncoder().encode(request)) + [UInt8(ascii: "\n")]
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: path) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw CommandFailure(
                message: "cannot connect to the admin socket \(path): \(error) "
                    + "(is the server running, and are you its user or root?)",
                exitCode: ExitStatus.cannotConnect
            )
        }
        return try await channel.executeThenClose { inbound, outbound in
            // A server that refuses this user answers and closes at once, maybe before the
            // request is written: its answer is still read and says why.
            var writeError: (any Error)?
            do {
                try await outbound.write(ByteBuffer(bytes: line))
            } catch {
                writeError = error
            }
            var buffer = ByteBuffer()
            for try await chunk in inbound {
                var chunk = chunk
                buffer.writeBuffer(&chunk)
                if let length = buffer.withUnsafeReadableBytes({ $0.firstIndex(of: UInt8(ascii: "\n")) }) {
                    return buffer.readBytes(length: length) ?? []
                }
            }
            if let writeError {
                throw CommandFailure(message: "cannot send the request to the admin socket: \(writeError)")
            }
            throw CommandFailure(message: "the admin socket closed without answering")
        }
    }

    struct Users: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "List registered users, sorted by a field.",
            discussion: """
                Prints an aligned table (ID, NAME, FULL NAME, ONLINE, LAST LOGON); with --json one \
                {"event":"user",...} per user.
                """
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        @Option(help: "Sort by id, name, registered or last-logon (default id).")
        var sort: String = "id"
        @Flag(help: "Largest first.")
        var descending = false
        @Option(help: "Users to skip (default 0).")
        var offset = 0
        @Option(help: "Users at most (default 100, at most 10000).")
        var limit = 100

        func validate() throws {
            guard ParleyServer.UserOrder(rawValue: sort) != nil else {
                throw ValidationError("--sort must be id, name, registered or last-logon, not \(sort)")
            }
            guard offset >= 0, (1...10_000).contains(limit) else {
                throw ValidationError("--offset must be at least 0 and --limit 1...10000")
            }
        }

        func run() async throws {
            var request = AdminRequest(command: "users")
            request.sort = ParleyServer.UserOrder(rawValue: sort)
            request.descending = descending
            request.offset = offset
            request.limit = limit
            let users = try await admin.call(request, as: [ParleyServer.UserSummary].self)
            let out = Output(json: output.json)
            if out.isJSON {
                for user in users { try out.json(AdminUserRecord(user)) }
                return
            }
            if users.isEmpty { return try out.line("no users") }
            try out.line(
                Self.table(
                    [["ID", "NAME", "FULL NAME", "ONLINE", "LAST LOGON"]]
                        + users.map { user in
                            [
                                "\(user.info.userID)", user.info.userName,
                                [user.info.firstName, user.info.lastName].filter { !$0.isEmpty }.joined(separator: " "),
                                user.info.isOnline ? "yes" : "no",
                                user.lastLogonAt.map(Timestamp.format) ?? "never",
                            ]
                        }))
        }

        /// Rows padded to aligned columns.
        static func table(_ rows: [[String]]) -> String {
            var widths: [Int] = []
            for row in rows {
                for (index, cell) in row.enumerated() {
                    if index >= widths.count { widths.append(0) }
                    widths[index] = max(widths[index], cell.count)
                }
            }
            return rows.map { row in
                row.enumerated().map { index, cell in
                    index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
                }
                .joined(separator: "  ")
            }
            .joined(separator: "\n")
        }
    }

    struct Sessions: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the logged-on sessions: session, user, address, connected since, application.",
            discussion: "With --json one {\"event\":\"session\",...} per session."
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        func run() async throws {
            let sessions = try await admin.call(AdminRequest(command: "sessions"), as: [ServerSession].self)
            let out = Output(json: output.json)
            if out.isJSON {
                for session in sessions { try out.json(AdminSessionRecord(session)) }
                return
            }
            if sessions.isEmpty { return try out.line("no sessions") }
            try out.line(
                Users.table(
                    [["SESSION", "USER", "ADDRESS", "CONNECTED SINCE", "APPLICATION"]]
                        + sessions.map {
                            ["\($0.id)", "\($0.user)", $0.address, Timestamp.format($0.connectedAt), $0.agent]
                        }))
        }
    }

    struct Counts: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count registered users, users online and guest connections.",
            discussion: "With --json {\"event\":\"counts\",\"users\":N,\"online\":N,\"guests\":N}."
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        func run() async throws {
            let counts = try await admin.call(AdminRequest(command: "counts"), as: ParleyServer.Counts.self)
            let record = AdminCountsRecord(users: counts.users, online: counts.online, guests: counts.guests)
            try Output(json: output.json).emit(
                record,
                text: Users.table([
                    ["users", "\(counts.users)"], ["online", "\(counts.online)"], ["guests", "\(counts.guests)"],
                ]))
        }
    }

    struct Kick: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Close a user's session (or one session): the client is told why and does not reconnect.",
            discussion: "Exits 1 when the user (session) is not logged on."
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        @Argument(help: "The user to kick.", transform: UserID.argument)
        var user: UserID?
        @Option(help: "Kick this session (from `parley admin sessions`) instead of a user.")
        var session: UInt64?
        @Option(help: "What the client is told (default: closed by the server's admin).")
        var reason: String?

        func validate() throws {
            guard (user == nil) != (session == nil) else { throw ValidationError("give a user ID or --session N") }
        }

        func run() async throws {
            var request = AdminRequest(command: "kick")
            request.user = user
            request.session = session
            request.reason = reason
            let what = user.map { "user \($0)" } ?? "session \(session ?? 0)"
            guard try await admin.call(request, as: AdminDone.self).changed else {
                throw CommandFailure(message: "\(what) is not logged on")
            }
            try Output(json: output.json).emit(
                AdminChangeRecord(event: "kicked", userID: user?.rawValue, session: session), text: "kicked \(what)")
        }
    }

    struct DeleteUser: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            commandName: "delete-user",
            abstract: "Delete a user, their contacts, their queued messages and their entries in others' contacts.",
            discussion: "A logged-on user is kicked first. Exits 4 for an unknown user."
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        @Argument(help: "The user to delete.", transform: UserID.argument)
        var user: UserID

        func run() async throws {
            var request = AdminRequest(command: "delete-user")
            request.user = user
            _ = try await admin.call(request, as: AdminDone.self)
            try Output(json: output.json).emit(
                AdminChangeRecord(event: "deleted", userID: user.rawValue), text: "deleted user \(user)")
        }
    }

    struct ReserveID: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            commandName: "reserve-id",
            abstract: "Reserve a user ID (REGISTER cannot take it), release one, or list them.",
            discussion: "parley admin reserve-id ID | reserve-id --release ID | reserve-id --list"
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        @Argument(help: "The user ID.", transform: UserID.argument)
        var user: UserID?
        @Flag(help: "Release the ID instead: REGISTER may take it again.")
        var release = false
        @Flag(help: "List the reserved IDs.")
        var list = false

        func validate() throws {
            guard list == (user == nil), !(list && release) else {
                throw ValidationError("give a user ID (with --release to release it), or --list alone")
            }
        }

        func run() async throws {
            let out = Output(json: output.json)
            guard let user else {
                let ids = try await admin.call(AdminRequest(command: "reserved-ids"), as: [UserID].self)
                if ids.isEmpty && !out.isJSON { try out.line("no reserved user IDs") }
                for id in ids {
                    try out.emit(AdminChangeRecord(event: "reserved-id", userID: id.rawValue), text: "\(id)")
                }
                return
            }
            var request = AdminRequest(command: release ? "release-id" : "reserve-id")
            request.user = user
            let done = try await admin.call(request, as: AdminDone.self)
            if release && !done.changed { throw CommandFailure(message: "user ID \(user) is not reserved") }
            try out.emit(
                AdminChangeRecord(event: release ? "released" : "reserved", userID: user.rawValue),
                text: release ? "released user ID \(user)" : "reserved user ID \(user)")
        }
    }

    struct LastSeen: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            commandName: "last-seen",
            abstract: "A user's last logon and logoff times.",
            discussion: "With --json {\"event\":\"last-seen\",\"userID\":...,\"online\":...,\"lastLogonAt\":...}."
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        @Argument(help: "The user.", transform: UserID.argument)
        var user: UserID

        func run() async throws {
            var request = AdminRequest(command: "last-seen")
            request.user = user
            let seen = try await admin.call(request, as: ParleyServer.LastSeen.self)
            let record = AdminLastSeenRecord(
                userID: seen.user.rawValue,
                online: seen.isOnline,
                lastLogonAt: seen.lastLogonAt,
                lastLogoffAt: seen.lastLogoffAt
            )
            try Output(json: output.json).emit(
                record,
                text: Users.table([
                    ["user", "\(seen.user)"], ["online", seen.isOnline ? "yes" : "no"],
                    ["last logon", seen.lastLogonAt.map(Timestamp.format) ?? "never"],
                    ["last logoff", seen.lastLogoffAt.map(Timestamp.format) ?? "never"],
                ]))
        }
    }

    struct Contacts: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "View or edit a user's contact list: contacts USER | contacts USER --add ID [--name N] | --remove ID.",
            discussion: "Prints the contacts as `parley contacts list` does."
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        @Argument(help: "Whose contact list.", transform: UserID.argument)
        var user: UserID
        @Option(help: "Add this user to the list.", transform: UserID.argument)
        var add: UserID?
        @Option(help: "Remove this user from the list.", transform: UserID.argument)
        var remove: UserID?
        @Option(help: "With --add: show the contact by this name.")
        var name: String?

        func validate() throws {
            guard add == nil || remove == nil else { throw ValidationError("give --add or --remove, not both") }
            if name != nil && add == nil { throw ValidationError("--name goes with --add") }
        }

        func run() async throws {
            let out = Output(json: output.json)
            var request = AdminRequest(command: "contacts")
            request.user = user
            if let add {
                request.command = "add-contact"
                request.contact = add
                request.name = name
                let record = ContactRecord(try await admin.call(request, as: Contact.self))
                return try out.emit(record, text: record.line)
            }
            if let remove {
                request.command = "remove-contact"
                request.contact = remove
                _ = try await admin.call(request, as: AdminDone.self)
                return try out.emit(RemovedContactRecord(userID: remove.rawValue), text: "removed \(remove)")
            }
            try ContactRecord.printList(try await admin.call(request, as: [Contact].self), to: out)
        }
    }

    struct Broadcast: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a notice from the server to every user online now.",
            discussion: "Prints how many users it went to."
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        @Argument(help: "The notice's text.")
        var text: String

        func run() async throws {
            var request = AdminRequest(command: "broadcast")
            request.text = text
            let count = try await admin.call(request, as: Int.self)
            try Output(json: output.json).emit(
                AdminBroadcastRecord(recipients: count), text: "sent to \(count) online user\(count == 1 ? "" : "s")")
        }
    }
}

/// A user as `parley admin users --json` prints it: the fields `whois` prints, the last logon
/// and logoff times, and `"event":"user"`.
struct AdminUserRecord: Encodable {
    var user: UserRecord
    var lastLogonAt: Date?
    var lastLogoffAt: Date?

    init(_ summary: ParleyServer.UserSummary) {
        user = UserRecord(summary.info)
        lastLogonAt = summary.lastLogonAt
        lastLogoffAt = summary.lastLogoffAt
    }

    private enum CodingKeys: String, CodingKey {
        case event, lastLogonAt, lastLogoffAt
    }

    func encode(to encoder: any Encoder) throws {
        try user.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode("user", forKey: .event)
        try container.encodeIfPresent(lastLogonAt, forKey: .lastLogonAt)
        try container.encodeIfPresent(lastLogoffAt, forKey: .lastLogoffAt)
    }
}

/// A session as `parley admin sessions --json` prints it.
struct AdminSessionRecord: Encodable {
    var event = "session"
    var session: UInt64
    var userID: UInt32
    var address: String
    var connectedAt: Date
    var application: String

    init(_ session: ServerSession) {
        self.session = session.id
        userID = session.user.rawValue
        address = session.address
        connectedAt = session.connectedAt
        application = session.agent
    }
}

struct AdminCountsRecord: Encodable {
    var event = "counts"
    var users: Int
    var online: Int
    var guests: Int
}

/// What a changing admin command did: kicked, deleted, reserved, released, reserved-id.
struct AdminChangeRecord: Encodable {
    var event: String
    var userID: UInt32?
    var session: UInt64?
}

struct AdminLastSeenRecord: Encodable {
    var event = "last-seen"
    var userID: UInt32
    var online: Bool
    var lastLogonAt: Date?
    var lastLogoffAt: Date?
}

struct AdminBroadcastRecord: Encodable {
    var event = "broadcast"
    var recipients: Int
}
