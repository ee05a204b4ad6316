import ArgumentParser
import Logging
import ParleyClient
import ParleyCore

/// `parley whois`: one user's details; the server shows them to logged-on users only.
struct WhoisCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "whois",
        abstract: "Print a user's details: \"1000 alice (Alice Smith, Acme/Lab) online\".",
        discussion: "The server answers logged-on users only, so --user and --password are required."
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions
    @OptionGroup var credentials: OptionalCredentialOptions

    @Argument(help: "The user ID to look up.", transform: UserID.argument)
    var target: UserID

    func validate() throws {
        guard credentials.user != nil else {
            throw ValidationError(
                "whois needs --user and --password: the server gives user details to logged-on users only"
            )
        }
    }

    func run() async throws {
        let out = Output(json: output.json)
        let info = try await withParleyClient(
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client")
        ) { [credentials, target] client in
            try await credentials.logOn(client)
            return try await client.userInfo(target)
        }
        let record = UserRecord(info)
        try out.emit(record, text: record.line)
    }
}
