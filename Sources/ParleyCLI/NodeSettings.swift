import Configuration
import Foundation
import ParleyClient
import ParleyCore
import ParleyNode

/// `parley node`'s settings, from (highest precedence first) its flags, `PARLEY_*` environment
/// variables, a JSON configuration file (`--config FILE` or `PARLEY_CONFIG`), and the defaults.
///
/// docs/CONFIGURATION.md lists every key; the environment variable of a key is PARLEY_ and the key
/// in upper case with underscores (`peerTimeout` -> `PARLEY_PEER_TIMEOUT`). The password is never
/// read from the file: only from a flag, `PARLEY_PASSWORD`, or the file `passwordFile` names.
enum NodeSettings {
    static let keys: Set<String> = [
        "data", "name", "server", "retry", "user", "passwordFile", "listenHost", "listenPort", "direct",
        "heartbeat", "peerTimeout", "outboxExpiry", "serverFingerprint", "caFile", "knownServers",
        "insecurePlaintext",
    ]

    static func load(flags: [String: ConfigValue], file: String?) async throws -> NodeSetup {
        let value = try await SettingReader.make(flags: flags, file: file, keys: keys)
        guard let data = try value.string("data") else {
            throw CommandFailure(message: "the data directory is not set: give --data DIR, PARLEY_DATA, or \"data\"")
        }
        guard let name = try value.string("name"), !name.isEmpty else {
            throw CommandFailure(message: "the node's name is not set: give --name NAME, PARLEY_NAME, or \"name\"")
        }
        var setup = NodeSetup(dataDirectory: data, name: name)
        setup.server = try value.string("server")
        if let server = setup.server {
            do {
                _ = try ParleyClient.Configuration(server: server)
            } catch {
                throw CommandFailure(message: "configuration: \(error.message)")
            }
        }
        if let retry = try value.string("retry") {
            guard let preset = RetryPreset(rawValue: retry) else {
                throw CommandFailure(message: "configuration: retry must be local, lan or wan")
            }
            setup.retry = preset
        }
        let user = try value.string("user")
        var password = try value.string("password", isSecret: true)
        if password == nil, let passwordFile = try value.string("passwordFile") {
            password = try PasswordOptions.read(passwordFile: passwordFile)
        }
        switch (user, password) {
        case (let user?, let password?):
            guard let id = UserID(user) else {
                throw CommandFailure(message: "configuration: user \"\(user)\" is not a user ID")
            }
            setup.credentials = ParleyNode.Credentials(userID: id, password: password)
        case (nil, nil):
            break
        default:
            throw CommandFailure(message: "configuration: a user and a password (or passwordFile) go together")
        }
        setup.listenHost = try value.string("listenHost")
        try value.int("listenPort").map { setup.listenPort = $0 }
        try value.bool("direct").map { setup.allowsDirectLinks = $0 }
        setup.heartbeat = try value.double("heartbeat")
        setup.peerTimeout = try value.double("peerTimeout")
        setup.outboxExpiry = try value.double("outboxExpiry")
        setup.security = try security(value, dataDirectory: data)
        try validate(setup)
        return setup
    }

    private static func security(_ value: SettingReader, dataDirectory: String) throws -> ConnectionSecurity {
        if try value.bool("insecurePlaintext") == true { return .insecurePlaintext }
        let fingerprint = try value.string("serverFingerprint")
        let caFile = try value.string("caFile")
        let knownServers = try value.string("knownServers") ?? dataDirectory + "/known-servers"
        do {
            return try TransportOptions.tls(fingerprint: fingerprint, caFile: caFile, knownServers: knownServers)
        } catch {
            throw CommandFailure(message: "configuration: \(error.message)")
        }
    }

    private static func validate(_ setup: NodeSetup) throws {
        func check(_ condition: Bool, _ message: String) throws {
            guard condition else { throw CommandFailure(message: "configuration: \(message)") }
        }
        try check((0...65535).contains(setup.listenPort), "listenPort must be 0...65535")
        try check(setup.heartbeat.map { $0 > 0 } ?? true, "heartbeat must be positive")
        try check(setup.peerTimeout.map { $0 > 0 } ?? true, "peerTimeout must be positive")
        try check(setup.outboxExpiry.map { $0 > 0 } ?? true, "outboxExpiry must be positive")
    }
}
