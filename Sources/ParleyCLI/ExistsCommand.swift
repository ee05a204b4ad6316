import ArgumentParser
import Logging
import ParleyClient
import ParleyCore

/// `parley exists`: whether a user ID is registered; needs no logon.
struct ExistsCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "exists",
        abstract: "Print whether a user ID is registered: true or false.",
        discussion: "Needs no logon. Exits 0 either way. With --json: {\"exists\":true,\"userID\":N}."
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions

    @Argument(help: "The user ID to look up.", transform: UserID.argument)
    var target: UserID

    func run() async throws {
        let out = Output(json: output.json)
        let exists = try await withParleyClient(
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client")
        ) { [target] client in
            try await client.userExists(target)
        }
        try out.emit(ExistsRecord(userID: target.rawValue, exists: exists), text: "\(exists)")
    }
}

/// `{"exists":true,"userID":N}`
struct ExistsRecord: Encodable {
    var userID: UInt32
    var exists: Bool
}
