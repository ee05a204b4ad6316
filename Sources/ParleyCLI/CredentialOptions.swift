import ArgumentParser
import ParleyClient
import ParleyCore

/// The user a command logs on as, when it must log on.
struct CredentialOptions: ParsableArguments {
    @Option(help: "The user ID to log on as.", transform: UserID.argument)
    var user: UserID

    @Option(help: "The user's password.")
    var password: String
}

/// The user a command logs on as, when logging on is optional.
struct OptionalCredentialOptions: ParsableArguments {
    @Option(help: "The user ID to log on as (optional; some requests need it).", transform: UserID.argument)
    var user: UserID?

    @Option(help: "The user's password (with --user).")
    var password: String?

    func validate() throws {
        if (user == nil) != (password == nil) {
            throw ValidationError("--user and --password go together")
        }
    }

    /// Logs `client` on when credentials were given.
    func logOn(_ client: ParleyClient) async throws {
        if let user, let password {
            try await client.logOn(userID: user, password: password)
        }
    }
}

extension UserID {
    /// Parses a command-line user ID.
    @Sendable
    static func argument(_ text: String) throws -> UserID {
        guard let id = UserID(text) else {
            throw ValidationError("\"\(text)\" is not a user ID (a number from 0 to \(UInt32.max))")
        }
        return id
    }
}
