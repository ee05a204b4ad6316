import ArgumentParser
import ParleyClient

/// How a client command reaches the server.
struct ServerOptions: ParsableArguments {
    @Option(help: "The server's address: HOST:PORT (\"[::1]:7420\" for IPv6).")
    var server: String

    @Option(help: "Connection attempts and time limits to suit the network in between.")
    var retry: RetryPreset = .local

    func validate() throws {
        do {
            _ = try ParleyClient.Configuration(server: server)
        } catch {
            throw ValidationError(error.message)
        }
    }

    func clientConfiguration() throws -> ParleyClient.Configuration {
        try ParleyClient.Configuration(server: server, retry: retry.policy)
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
