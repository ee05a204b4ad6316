import ArgumentParser
import Logging
import ParleyClient
import ParleyCore

/// `parley register`: creates a user and prints its ID.
struct RegisterCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "register",
        abstract: "Register a new user and print its user ID.",
        discussion: "With --json, prints the stored user: {\"userID\":N,\"userName\":...}."
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions
    @OptionGroup var connection: ServerOptions

    @Option(help: "The user name (required, at most 64 characters).")
    var name: String

    @Option(help: "The new user's password.")
    var password: String

    @Option(
        name: .customLong("user-id"),
        help: "Ask for this user ID instead of the next free one.",
        transform: UserID.argument
    )
    var userID: UserID?

    @Option var firstName = ""
    @Option var lastName = ""
    @Option var organization = ""
    @Option var department = ""
    @Option var application = ""

    func run() async throws {
        let out = Output(json: output.json)
        let info = UserInfo(
            userName: name,
            firstName: firstName,
            lastName: lastName,
            organization: organization,
            department: department,
            application: application
        )
        let registered = try await withParleyClient(
            configuration: try connection.clientConfiguration(),
            logger: Logger(label: "parley.client")
        ) { [password, userID] client in
            try await client.register(info, password: password, requestedUserID: userID)
        }
        try out.emit(UserRecord(registered), text: "\(registered.userID)")
    }
}
