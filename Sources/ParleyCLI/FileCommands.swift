import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyServer
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// `parley send-file`: sends a file through the server and waits until the recipient has it.
struct SendFileCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-file",
        abstract: "Send a file to a user through the server; exits 0 once the recipient has it with the right SHA-256.",
        discussion: """
            The file goes to the server in chunks (docs/PROTOCOL.md section 26), with a progress \
            bar on a terminal ({"event":"progress",...} lines with --json), then the command waits \
            for the recipient: exits 0 when it has the whole file with the right hash, 4 when it \
            declined it (or the server refused the file: too large, over the recipient's quota, a \
            bad name), 6 when --timeout passed first. Running the same command again (same file, \
            unchanged, same recipient) resumes an interrupted upload from what the server has. \
            --no-wait returns once the server has the file. With --data DIR the file is sent by the \
            node kept in DIR: directly to the recipient's node when one can be reached (the LAN, or \
            the addresses the server gives), resuming from the receiver's offset after a broken \
            link, and through the server otherwise (docs/PROTOCOL.md section 26.9); a direct \
            transfer exits 0 once the recipient's node has the whole file. PATH - sends standard \
            input as a stream of unknown length (give --name): read as it is sent, never held \
            whole, resumed within the command after a lost connection or link, but not by running \
            the command again.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions
    @OptionGroup var credentials: CredentialOptions

    @Option(name: .customLong("to"), help: "The recipient's user ID.", transform: UserID.argument)
    var recipient: UserID

    @Option(help: "The name the recipient sees (default: the file's name).")
    var name: String?

    @Option(help: "Wait at most this many seconds for the recipient.")
    var timeout: Double?

    @Flag(help: "Return once the server has the file; do not wait for the recipient.")
    var noWait = false

    @Option(
        name: .customLong("data"),
        help: "Send as the node kept in this directory: directly to the recipient's node first, the server otherwise."
    )
    var dataDirectory: String?

    @Option(help: "With --data: at most this many seconds to wait for the server logon before sending.")
    var wait: Double = 5

    @Argument(help: "The file to send; - for standard input, sent as a stream (with --name).")
    var path: String

    /// Standard input is sent, as a stream.
    var isStream: Bool { path == "-" }

    /// The name the recipient sees.
    var shownName: String { name ?? URL(fileURLWithPath: path).lastPathComponent }

    func validate() throws {
        if let timeout, timeout <= 0 { throw ValidationError("--timeout must be positive") }
        if isStream {
            guard name != nil else { throw ValidationError("give --name NAME to send standard input") }
        } else {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw ValidationError("cannot read \(path)")
            }
        }
    }

    func run() async throws {
        if let dataDirectory {
            try await sendAsNode(dataDirectory: dataDirectory)
            return
        }
        let out = Output(json: output.json)
        let (credentials, recipient, name, path, noWait) = (self.credentials, recipient, name, path, noWait)
        let (shown, isStream) = (shownName, isStream)
        let deadline = ContinuousClock.Instant.after(seconds: timeout)
        try await withParleyClient(
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client")
        ) { client in
            try await client.logOn(userID: credentials.user, password: credentials.password)
            let display = ProgressDisplay(out: out, label: shown)
            let id =
                if isStream {
                    try await client.sendStream(StandardInputBytes(), named: shown, to: recipient) {
                        display.update($0)
                    }
                } else {
                    try await client.sendFile(at: path, to: recipient, name: name) { display.update($0) }
                }
            display.finish()
            try out.emit(
                TransferRecord(event: "uploaded", id: id.rawValue, name: shown, peer: recipient.rawValue),
                text: "uploaded \(shown) as transfer \(id)")
            guard !noWait else { return }
            let status = try await withDeadline(deadline) { () async -> TransferStatus? in
                for await event in client.events {
                    if case .transferStatus(let status) = event, status.id == id { return status }
                }
                return nil
            }
            guard let status else { throw ExitStatus.incomplete }
            try out.emit(
                TransferRecord(status),
                text: "transfer \(id) to \(recipient): \(status.outcome.rawValue) \(status.reason)")
            guard status.outcome == .completed else {
                throw ParleyError(
                    code: status.outcome == .declined ? .transferRefused : .transferNotFound,
                    message: "the transfer was \(status.outcome.rawValue)")
            }
        }
    }
}

/// `parley transfers`: the transfers the server holds for this user, and cancelling one.
struct TransfersCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "transfers",
        abstract: "List the files the server holds that you sent or receive; resume or cancel one.",
        discussion: """
            list (the default) prints one line per transfer: ID, sender -> recipient, name, bytes \
            held / size, and whether it is ready for the recipient. cancel ID gives up a transfer \
            you sent. resume ID continues one that was cut: one you send with --file PATH (the \
            server does not know where the file is on this machine) from the bytes the server \
            has, one you receive with --files DIR from its partial file in DIR. Running the same \
            send-file again, or receive --files with the same folder, resumes too. A direct \
            transfer between nodes (send-file --data) is not held by the server: run the same \
            send-file --data again, and it resumes from the receiving node's offset. list --files DIR \
            also lists the partial files in DIR (of either route) that a receive with that folder \
            would continue.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions
    @OptionGroup var credentials: CredentialOptions

    @Argument(help: "list, resume ID, or cancel ID.")
    var action: [String] = ["list"]

    @Option(help: "With resume: the file of a transfer you send.")
    var file: String?

    @Option(
        help:
            "With resume: the folder a transfer you receive goes to (its partial file is continued). With list: also list the partial files in it."
    )
    var files: String?

    func validate() throws {
        switch action.first {
        case "list": guard action.count == 1 else { throw ValidationError("list takes no argument") }
        case "cancel", "resume":
            guard action.count == 2, UInt64(action[1]) != nil else { throw ValidationError("give \(action[0]) ID") }
        default: throw ValidationError("the action is list, resume ID or cancel ID")
        }
    }

    func run() async throws {
        let out = Output(json: output.json)
        let (credentials, action, file, files) = (self.credentials, self.action, self.file, self.files)
        try await withParleyClient(
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client")
        ) { client in
            try await client.logOn(userID: credentials.user, password: credentials.password)
            if action.first == "cancel", let raw = UInt64(action[1]) {
                try await client.cancelTransfer(TransferID(raw))
                try out.emit(
                    TransferRecord(event: "cancelled", id: raw, name: "", peer: 0), text: "cancelled transfer \(raw)")
                return
            }
            if action.first == "resume", let raw = UInt64(action[1]) {
                try await Self.resume(
                    TransferID(raw), client: client, user: credentials.user, file: file, folder: files, out: out)
                return
            }
            for held in try await client.transfers() {
                let offer = held.offer
                try out.emit(
                    HeldTransferRecord(held),
                    text:
                        "\(offer.id) \(offer.sender) -> \(offer.recipient) \(offer.name) \(held.heldBytes)/\(offer.size) \(held.isReady ? "ready" : "uploading")"
                )
            }
            if let files { try Self.listPartialFiles(in: files, out: out) }
        }
    }

    /// The partial files in a receive folder: downloads from the server or direct transfers
    /// that stopped before their end.
    static func listPartialFiles(in folder: String, out: Output) throws {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        } catch {
            throw ParleyError(code: .storageError, message: "cannot list \(folder)", cause: error)
        }
        for fileName in names {
            guard let partial = ParleyClient.partialTransfer(named: fileName) else { continue }
            let path = folder + "/" + fileName
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            let bytes = (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
            try out.emit(
                PartialFileRecord(
                    id: partial.id.rawValue, sender: partial.sender.rawValue, name: partial.name, path: path,
                    bytes: bytes),
                text: "\(partial.id) from \(partial.sender) \(partial.name): \(bytes) bytes received so far (\(path))")
        }
    }
}

/// One line of `parley transfers list --files DIR --json` for a partial file.
struct PartialFileRecord: Encodable {
    var event = "partial"
    var id: UInt64
    var sender: UInt32
    var name: String
    var path: String
    var bytes: UInt64
}

/// What `receive --files` does with an offered file.
struct FileAcceptance: ExpressibleByArgument, Sendable {
    /// nil: every sender.
    var senders: Set<UserID>?
    var acceptsAny: Bool

    init?(argument: String) {
        switch argument {
        case "all": (senders, acceptsAny) = (nil, true)
        case "none": (senders, acceptsAny) = ([], false)
        default:
            guard argument.hasPrefix("from:") else { return nil }
            let ids = argument.dropFirst(5).split(separator: ",").map { UserID(String($0)) }
            guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else { return nil }
            (senders, acceptsAny) = (Set(ids.compactMap { $0 }), true)
        }
    }

    var defaultValueDescription: String {
        guard acceptsAny else { return "none" }
        guard let senders else { return "all" }
        return "from:" + senders.map { String($0.rawValue) }.sorted().joined(separator: ",")
    }

    func accepts(_ sender: UserID) -> Bool {
        acceptsAny && (senders?.contains(sender) ?? true)
    }
}

extension ReceiveCommand {
    /// Saves (or declines) an offered file as `--files` and `--accept-files` say; returns
    /// whether a file was saved.
    static func handle(_ offer: FileOffer, client: ParleyClient, folder: String, policy: FileAcceptance, out: Output)
        async throws -> Bool
    {
        try await handle(
            offer, folder: folder, policy: policy, out: out,
            decline: { try await client.declineFile($0, reason: $1) },
            receive: { try await client.receiveFile($0, into: folder, progress: $1) })
    }

    /// ``handle(_:client:folder:policy:out:)`` with the calls of a client or a node.
    static func handle(
        _ offer: FileOffer,
        folder: String,
        policy: FileAcceptance,
        out: Output,
        decline: (FileOffer, String) async throws -> Void,
        receive: (FileOffer, @escaping @Sendable (TransferProgress) -> Void) async throws -> String
    ) async throws -> Bool {
        guard policy.accepts(offer.sender) else {
            try await decline(offer, "not accepted by the recipient's policy")
            try out.emit(
                TransferRecord(event: "declined", id: offer.id.rawValue, name: offer.name, peer: offer.sender.rawValue),
                text: "declined \(offer.name) from \(offer.sender)")
            return false
        }
        let display = ProgressDisplay(out: out, label: offer.name)
        let saved = try await receive(offer) { display.update($0) }
        display.finish()
        let record = SavedFileRecord(offer, path: saved)
        try out.emit(
            record,
            text: "file from \(offer.sender) saved as \(saved) (\(record.size) bytes)")
        return true
    }
}

/// Shows a transfer's progress: a bar on standard error when it is a terminal, or
/// {"event":"progress",...} lines with --json; at most 4 updates a second.
final class ProgressDisplay: Sendable {
    private let out: Output
    private let label: String
    private let onTerminal: Bool
    private let last = Mutex<ContinuousClock.Instant?>(nil)
    private let latest = Mutex<TransferProgress?>(nil)

    init(out: Output, label: String) {
        self.out = out
        self.label = label
        self.onTerminal = !out.isJSON && isatty(STDERR_FILENO) == 1
    }

    func update(_ progress: TransferProgress) {
        latest.withLock { $0 = progress }
        let now = ContinuousClock.now
        let due = last.withLock { last -> Bool in
            guard last.map({ now - $0 >= .milliseconds(250) }) ?? true else { return false }
            last = now
            return true
        }
        if due { show(progress, final: false) }
    }

    func finish() {
        guard let progress = latest.withLock({ $0 }) else { return }
        show(progress, final: true)
    }

    private func show(_ progress: TransferProgress, final: Bool) {
        if out.isJSON {
            do {
                try out.json(ProgressRecord(progress))
            } catch {
                Output.note("cannot write progress: \(error)")
            }
            return
        }
        guard onTerminal else { return }
        let total = progress.totalBytes ?? 0
        let fraction = total > 0 ? Double(progress.bytesDone) / Double(total) : 0
        let filled = Int(fraction * 30)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled)
        let rate = String(format: "%.1f MB/s", progress.bytesPerSecond / 1_000_000)
        let line = "\r\(label) [\(bar)] \(Int(fraction * 100))% \(progress.bytesDone)/\(total) bytes \(rate)"
        let data = Data((line + (final ? "\n" : "")).utf8)
        FileHandle.standardError.write(data)
    }
}

/// `{"event":"progress","id":N,"bytesDone":N,"totalBytes":N,"bytesPerSecond":X,"resumedFrom":N}`
struct ProgressRecord: Encodable {
    var event = "progress"
    var id: UInt64
    var bytesDone: UInt64
    var totalBytes: UInt64?
    var bytesPerSecond: Double
    var resumedFrom: UInt64

    init(_ progress: TransferProgress) {
        id = progress.id.rawValue
        bytesDone = progress.bytesDone
        totalBytes = progress.totalBytes
        bytesPerSecond = progress.bytesPerSecond.rounded()
        resumedFrom = progress.resumedFrom
    }
}

/// `{"event":"uploaded"|"cancelled"|"declined"|OUTCOME,"id":N,"name":...,"peer":N,"reason":...,"route":...}`
/// (`route`, direct or server, from `send-file --data`).
struct TransferRecord: Encodable {
    var event: String
    var id: UInt64
    var name: String
    var peer: UInt32
    var reason: String?
    var route: String?

    init(event: String, id: UInt64, name: String, peer: UInt32) {
        self.event = event
        self.id = id
        self.name = name
        self.peer = peer
    }

    init(_ status: TransferStatus) {
        event = status.outcome.rawValue
        id = status.id.rawValue
        name = ""
        peer = status.recipient.rawValue
        reason = status.reason
    }
}

/// `{"event":"file","id":N,"name":...,"path":...,"sender":N,"sha256":HEX,"size":N}`
struct SavedFileRecord: Encodable {
    var event = "file"
    var id: UInt64
    var name: String
    var path: String
    var sender: UInt32
    var sha256: String?
    var size: UInt64

    init(_ offer: FileOffer, path: String) {
        id = offer.id.rawValue
        name = offer.name
        self.path = path
        sender = offer.sender.rawValue
        // A file received directly carries its hash in the end frame, not in the offer.
        sha256 = offer.sha256.isEmpty ? nil : offer.sha256.map { String(format: "%02x", $0) }.joined()
        // A stream's offer from another node says 0: its length came with the end.
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        size = (attributes?[.size] as? NSNumber)?.uint64Value ?? offer.size
    }
}

/// One line of `parley transfers --json` and `parley admin files --json`.
struct HeldTransferRecord: Encodable {
    var event: String
    var id: UInt64
    var sender: UInt32
    var recipient: UInt32
    var name: String
    var size: UInt64
    var heldBytes: UInt64
    var ready: Bool
    var expiresAt: Date?

    init(_ held: HeldTransfer) {
        event = "transfer"
        id = held.offer.id.rawValue
        sender = held.offer.sender.rawValue
        recipient = held.offer.recipient.rawValue
        name = held.offer.name
        size = held.offer.size
        heldBytes = held.heldBytes
        ready = held.isReady
        expiresAt = held.offer.expiresAt
    }

    init(_ file: ParleyServer.HeldFile) {
        event = "file"
        id = file.id.rawValue
        sender = file.sender.rawValue
        recipient = file.recipient.rawValue
        name = file.name
        size = file.size
        heldBytes = file.heldBytes
        ready = file.isReady
        expiresAt = file.expiresAt
    }
}
