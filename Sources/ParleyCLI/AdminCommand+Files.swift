import ArgumentParser
import Foundation
import Logging
import ParleyCore
import ParleyServer

extension AdminCommand {
    /// `parley admin files`: the transfers the server holds (docs/PROTOCOL.md section 26).
    struct Files: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the files the server holds: uploading, or waiting for their recipient.",
            discussion: """
                One line per file: sender/ID, sender -> recipient, name, bytes held / size, ready or \
                uploading, and when it expires. With --json one {"event":"file",...} per file.
                """
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        func run() async throws {
            let out = Output(json: output.json)
            for file in try await admin.call(AdminRequest(command: "files"), as: [ParleyServer.HeldFile].self) {
                try out.emit(
                    HeldTransferRecord(file),
                    text:
                        "\(file.sender)/\(file.id) \(file.sender) -> \(file.recipient) \(file.name) \(file.heldBytes)/\(file.size) \(file.isReady ? "ready" : "uploading") expires \(Timestamp.format(file.expiresAt))"
                )
            }
        }
    }

    /// `parley admin delete-file SENDER ID`.
    struct DeleteFile: AsyncParsableCommand, LoggingCommand {
        static let configuration = CommandConfiguration(
            commandName: "delete-file",
            abstract: "Delete a held file; its sender and recipient are told.",
            discussion: "Exits 1 when the server does not hold it."
        )
        static let defaultLogLevel = Logger.Level.warning
        @OptionGroup var output: OutputOptions
        @ParentCommand var admin: AdminCommand

        @Argument(help: "The file's sender.", transform: UserID.argument)
        var sender: UserID
        @Argument(help: "The transfer's ID (from `parley admin files`).")
        var id: UInt64
        @Option(help: "What the sender and recipient are told.")
        var reason: String?

        func run() async throws {
            var request = AdminRequest(command: "delete-file")
            request.user = sender
            request.transfer = TransferID(id)
            request.reason = reason
            guard try await admin.call(request, as: AdminDone.self).changed else {
                throw CommandFailure(message: "the server holds no transfer \(id) of user \(sender)")
            }
            try Output(json: output.json).emit(
                AdminChangeRecord(event: "deletedFile", userID: sender.rawValue), text: "deleted \(sender)/\(id)")
        }
    }
}
