import ArgumentParser
import Foundation
import ParleyClient
import ParleyCore

/// The user a command logs on as, when it must log on.
///
/// Secrets need not be on the command line: `--password-file FILE` or `PARLEY_PASSWORD`, and
/// `PARLEY_USER` for the user.
struct CredentialOptions: ParsableArguments {
    @Option(
        name: .customLong("user"),
        help: "The user ID to log on as (environment: PARLEY_USER).",
        transform: UserID.argument
    )
    var userOption: UserID?

    @OptionGroup var secret: PasswordOptions

    func validate() throws {
        guard try EnvironmentCredentials.user(userOption) != nil else {
            throw ValidationError("give --user ID (or set PARLEY_USER)")
        }
        guard try secret.password() != nil else {
            throw ValidationError("give --password, --password-file FILE, or set PARLEY_PASSWORD")
        }
    }

    /// The user (validated: present).
    var user: UserID { (try? EnvironmentCredentials.user(userOption)).flatMap { $0 } ?? UserID(0) }

    /// The password (validated: present).
    var password: String { (try? secret.password()).flatMap { $0 } ?? "" }
}

/// The user a command logs on as, when logging on is optional.
struct OptionalCredentialOptions: ParsableArguments {
    @Option(
        name: .customLong("user"),
        help: "The user ID to log on as (optional; some requests need it; environment: PARLEY_USER).",
        transform: UserID.argument
    )
    var userOption: UserID?

    @OptionGroup var secret: PasswordOptions

    func validate() throws {
        if (try EnvironmentCredentials.user(userOption) == nil) != (try secret.password() == nil) {
            throw ValidationError("--user and a password (--password, --password-file or PARLEY_PASSWORD) go together")
        }
    }

    var user: UserID? { (try? EnvironmentCredentials.user(userOption)).flatMap { $0 } }

    var password: String? { (try? secret.password()).flatMap { $0 } }

    /// Logs `client` on when credentials were given.
    func logOn(_ client: ParleyClient) async throws {
        if let user, let password {
            try await client.logOn(userID: user, password: password)
        }
    }
}

/// Where a password comes from: the option, a file, or the environment (in that order).
struct PasswordOptions: ParsableArguments {
    @Option(
        name: .customLong("password"),
        help:
            "The user's password (visible to other local users in the process list: prefer --password-file or PARLEY_PASSWORD)."
    )
    var passwordOption: String?

    @Option(
        name: .customLong("password-file"),
        help: "Read the password from the first line of this file."
    )
    var passwordFile: String?

    func validate() throws {
        if passwordOption != nil, passwordFile != nil {
            throw ValidationError("give --password or --password-file, not both")
        }
        _ = try password()
    }

    /// The password, if one was given in any of the three ways.
    func password() throws -> String? {
        if let passwordOption { return passwordOption }
        if let passwordFile { return try Self.read(passwordFile: passwordFile) }
        return ProcessInfo.processInfo.environment["PARLEY_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The first line of a password file.
    static func read(passwordFile: String) throws -> String {
        let text: String
        do {
            text = try String(contentsOfFile: passwordFile, encoding: .utf8)
        } catch {
            throw ValidationError("cannot read the password file \(passwordFile): \(error.localizedDescription)")
        }
        return String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }
}

/// `PARLEY_USER` and `PARLEY_SERVER`, used where the option is not given.
enum EnvironmentCredentials {
    static func user(_ option: UserID?) throws -> UserID? {
        if let option { return option }
        guard let text = ProcessInfo.processInfo.environment["PARLEY_USER"], !text.isEmpty else { return nil }
        do {
            return try UserID.argument(text)
        } catch {
            throw ValidationError("PARLEY_USER: \"\(text)\" is not a user ID")
        }
    }

    static func server(_ option: String?) -> String? {
        option ?? ProcessInfo.processInfo.environment["PARLEY_SERVER"].flatMap { $0.isEmpty ? nil : $0 }
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
