import ArgumentParser
import ParleyClient
import ParleyCore

/// How a client command reaches the server.
struct ServerOptions: ParsableArguments {
    @Option(
        name: .customLong("server"),
        help: "The server's address: HOST:PORT (\"[::1]:7420\" for IPv6; environment: PARLEY_SERVER)."
    )
    var serverOption: String?

    /// The server's address (validated: present).
    var server: String { EnvironmentCredentials.server(serverOption) ?? "" }

    @Option(help: "Connection attempts and time limits to suit the network in between.")
    var retry: RetryPreset = .local

    @OptionGroup var transport: TransportOptions

    func validate() throws {
        guard EnvironmentCredentials.server(serverOption) != nil else {
            throw ValidationError("give --server HOST:PORT (or set PARLEY_SERVER)")
        }
        do {
            _ = try ParleyClient.Configuration(server: server)
        } catch {
            throw ValidationError(error.message)
        }
    }

    func clientConfiguration() throws -> ParleyClient.Configuration {
        var configuration = try ParleyClient.Configuration(server: server, retry: retry.policy)
        configuration.security = try transport.security(defaultKnownServers: nil)
        return configuration
    }
}

/// `--retry` values.
enum RetryPreset: String, ExpressibleByArgument, CaseIterable {
    case local, lan, wan

    var policy: ParleyClient.RetryPolicy {
        switch self {
        case .local: .local
        case .lan: .lan
        case .wan: .wan
        }
    }
}
