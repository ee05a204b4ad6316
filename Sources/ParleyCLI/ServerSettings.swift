import Configuration
import Foundation
import Logging
import ParleyCore
import ParleyServer
import SystemPackage

/// `parley server`'s settings, from (highest precedence first) its flags, `PARLEY_*` environment
/// variables, a JSON configuration file (`--config FILE` or `PARLEY_CONFIG`), and the defaults.
///
/// Every key is listed in ``keys`` with its default and documented in docs/CONFIGURATION.md; the
/// environment variable of a key is PARLEY_ and the key in upper case with underscores
/// (`maxConnections` -> `PARLEY_MAX_CONNECTIONS`, `tls.certificate` -> `PARLEY_TLS_CERTIFICATE`).
struct ServerSettings {
    var data: String
    var host = "0.0.0.0"
    var port = 7420
    var portSearch = 1
    var name = "parley"
    var tlsCertificate: String?
    var tlsKey: String?
    var insecurePlaintext = false
    var metricsAddress: String?
    var maxConnections = 16_384
    var maxFrameSize = 1 << 20
    var minimumUserID = 1000
    var replaceSessions = false
    var passwordCost = 14
    var eventLoops = 1
    var heartbeat = 30.0
    var idleTimeout = 90.0
    var durability = "normal"
    /// Where messages wait: "log" or "sqlite".
    var messageStorage = "log"
    /// Days of message history to keep; nil keeps none.
    var historyDays: Int?
    var logLevel = "info"
    /// The admin socket's path; nil for `admin.sock` in `data`, "off" for none.
    var adminSocket: String?
    /// File transfers (docs/PROTOCOL.md section 26).
    var maxFileSize = 1 << 30
    var transferQuota = 2 << 30
    var transferRetention = 7 * 24 * 3600.0

    /// Every key a file, the environment or a flag can set.
    static let keys: Set<String> = [
        "data", "host", "port", "portSearch", "name", "tls.certificate", "tls.key", "tls.insecurePlaintext",
        "metricsAddress", "maxConnections", "maxFrameSize", "minimumUserID", "replaceSessions", "passwordCost",
        "eventLoops", "heartbeat", "idleTimeout", "durability", "messageStorage", "logLevel", "adminSocket",
        "historyDays",
        "maxFileSize", "transferQuota", "transferRetention",
    ]

    /// The keys SIGHUP applies to a running server; the others need a restart.
    static let reloadable: Set<String> = ["logLevel", "maxConnections", "tls.certificate", "tls.key"]

    /// Reads and checks the settings.
    ///
    /// - Parameters:
    ///   - flags: the values given as flags, by key.
    ///   - file: the configuration file, if any (flag or PARLEY_CONFIG).
    static func load(flags: [String: ConfigValue], file: String?) async throws -> ServerSettings {
        let value = try await SettingReader.make(flags: flags, file: file, keys: keys)
        guard let data = try value.string("data") else {
            throw CommandFailure(
                message:
                    "the data directory is not set: give --data DIR, PARLEY_DATA, or \"data\" in the configuration file"
            )
        }
        var settings = ServerSettings(data: data)
        try value.string("host").map { settings.host = $0 }
        try value.int("port").map { settings.port = $0 }
        try value.int("portSearch").map { settings.portSearch = $0 }
        try value.string("name").map { settings.name = $0 }
        settings.tlsCertificate = try value.string("tls.certificate")
        settings.tlsKey = try value.string("tls.key")
        try value.bool("tls.insecurePlaintext").map { settings.insecurePlaintext = $0 }
        settings.metricsAddress = try value.string("metricsAddress")
        try value.int("maxConnections").map { settings.maxConnections = $0 }
        try value.int("maxFrameSize").map { settings.maxFrameSize = $0 }
        try value.int("minimumUserID").map { settings.minimumUserID = $0 }
        try value.bool("replaceSessions").map { settings.replaceSessions = $0 }
        try value.int("passwordCost").map { settings.passwordCost = $0 }
        try value.int("eventLoops").map { settings.eventLoops = $0 }
        try value.double("heartbeat").map { settings.heartbeat = $0 }
        try value.double("idleTimeout").map { settings.idleTimeout = $0 }
        try value.string("durability").map { settings.durability = $0 }
        try value.string("messageStorage").map { settings.messageStorage = $0 }
        settings.historyDays = try value.int("historyDays")
        try value.string("logLevel").map { settings.logLevel = $0 }
        settings.adminSocket = try value.string("adminSocket")
        try value.int("maxFileSize").map { settings.maxFileSize = $0 }
        try value.int("transferQuota").map { settings.transferQuota = $0 }
        try value.double("transferRetention").map { settings.transferRetention = $0 }
        try settings.validate()
        return settings
    }

    private func validate() throws {
        func check(_ condition: Bool, _ message: String) throws {
            guard condition else { throw CommandFailure(message: "configuration: \(message)") }
        }
        try check((0...65535).contains(port), "port must be 0...65535")
        try check(portSearch >= 1, "portSearch must be at least 1")
        try check((tlsCertificate == nil) == (tlsKey == nil), "tls.certificate and tls.key go together")
        try check(!(insecurePlaintext && tlsCertificate != nil), "tls.insecurePlaintext turns TLS off: no certificate")
        try check(metricsAddress.map { MetricsAddress($0) != nil } ?? true, "metricsAddress must be HOST:PORT")
        try check(maxConnections >= 1, "maxConnections must be at least 1")
        try check(maxFrameSize >= 1024, "maxFrameSize must be at least 1024")
        try check((1...Int(UInt32.max)).contains(minimumUserID), "minimumUserID must be at least 1")
        try check((1...24).contains(passwordCost), "passwordCost must be 1...24")
        try check(eventLoops >= 1, "eventLoops must be at least 1")
        try check(heartbeat > 0 && idleTimeout > heartbeat, "heartbeat must be positive and below idleTimeout")
        try check(["normal", "full"].contains(durability), "durability must be normal or full")
        try check(
            ParleyServer.Configuration.MessageStorage(rawValue: messageStorage) != nil,
            "messageStorage must be log or sqlite")
        try check(historyDays.map { (1...36_500).contains($0) } ?? true, "historyDays must be 1...36500")
        try check(maxFileSize >= 0, "maxFileSize must be at least 0")
        try check(transferQuota >= 0, "transferQuota must be at least 0")
        try check(transferRetention > 0, "transferRetention must be positive")
        try check(
            adminSocket.map { !$0.isEmpty && $0.utf8.count <= 107 } ?? true,
            "adminSocket must be a path of 1...107 bytes, or off")
        try check(
            Logger.Level(rawValue: logLevel) != nil,
            "logLevel must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))"
        )
    }

    /// The log level (validated).
    var level: Logger.Level { Logger.Level(rawValue: logLevel) ?? .info }

    /// The keys whose values differ between two loads, that SIGHUP cannot apply.
    func keysNeedingRestart(comparedTo other: ServerSettings) -> [String] {
        let mine = Mirror(reflecting: self).children
        let theirs = Mirror(reflecting: other).children
        var changed: [String] = []
        for (a, b) in zip(mine, theirs) where "\(a.value)" != "\(b.value)" {
            guard let label = a.label else { continue }
            let key =
                [
                    "tlsCertificate": "tls.certificate", "tlsKey": "tls.key",
                    "insecurePlaintext": "tls.insecurePlaintext",
                ][label] ?? label
            if !Self.reloadable.contains(key) { changed.append(key) }
        }
        return changed
    }

    /// The server configuration these settings describe.
    var serverConfiguration: ParleyServer.Configuration {
        var configuration = ParleyServer.Configuration(dataDirectory: data)
        configuration.host = host
        configuration.port = port
        configuration.portSearchLimit = portSearch
        configuration.serverName = name
        if insecurePlaintext {
            configuration.tls = .insecurePlaintext
        } else if let tlsCertificate, let tlsKey {
            configuration.tls = .certificate(chainFile: tlsCertificate, privateKeyFile: tlsKey)
        }
        configuration.maximumConnections = maxConnections
        configuration.maximumFrameSize = maxFrameSize
        configuration.minimumUserID = UserID(UInt32(minimumUserID))
        configuration.replacesExistingSession = replaceSessions
        configuration.passwordCost.log2N = passwordCost
        configuration.eventLoopThreads = eventLoops
        configuration.heartbeatInterval = .milliseconds(Int64(heartbeat * 1000))
        configuration.idleTimeout = .milliseconds(Int64(idleTimeout * 1000))
        configuration.durability = durability == "full" ? .full : .normal
        configuration.messageStorage = ParleyServer.Configuration.MessageStorage(rawValue: messageStorage) ?? .log
        configuration.historyDays = historyDays
        configuration.maximumFileSize = UInt64(maxFileSize)
        configuration.transferQuota = UInt64(transferQuota)
        configuration.transferRetention = .milliseconds(Int64(transferRetention * 1000))
        switch adminSocket {
        case nil: configuration.adminSocket = .inDataDirectory
        case "off"?: configuration.adminSocket = .off
        case let path?: configuration.adminSocket = .path(path)
        }
        return configuration
    }
}

/// Reads one key: nil when no source sets it, an error naming the key when a source sets it to a
/// value of the wrong type.
struct SettingReader {
    let reader: ConfigReader

    /// The sources of a command's settings, highest precedence first: its flags, `PARLEY_*`
    /// environment variables, and a JSON configuration file (`--config FILE` or `PARLEY_CONFIG`)
    /// whose keys must all be in `keys`.
    static func make(flags: [String: ConfigValue], file: String?, keys: Set<String>) async throws -> SettingReader {
        var providers: [any ConfigProvider] = [
            InMemoryProvider(
                name: "flags",
                values: Dictionary(
                    uniqueKeysWithValues: flags.map {
                        (AbsoluteConfigKey($0.key.split(separator: ".").map(String.init)), $0.value)
                    })
            ),
            EnvironmentVariablesProvider(secretsSpecifier: .specific(["PARLEY_PASSWORD"])).prefixKeys(with: "parley"),
        ]
        let file = file ?? ProcessInfo.processInfo.environment["PARLEY_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        if let file {
            try checkKeys(of: file, keys: keys)
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(file)))
            } catch {
                throw CommandFailure(message: "cannot read the configuration file \(file): \(error)")
            }
        }
        return SettingReader(reader: ConfigReader(providers: providers))
    }

    /// A key the command does not know is a mistake the admin wants to hear about (a typo would
    /// otherwise silently keep the default).
    private static func checkKeys(of file: String, keys: Set<String>) throws {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file)))
        } catch {
            throw CommandFailure(
                message: "the configuration file \(file) is not valid JSON: \(error.localizedDescription)")
        }
        guard let top = object as? [String: Any] else {
            throw CommandFailure(message: "the configuration file \(file) must hold one JSON object")
        }
        var unknown: [String] = []
        func walk(_ object: [String: Any], prefix: String) {
            for (key, value) in object {
                let path = prefix.isEmpty ? key : prefix + "." + key
                if let nested = value as? [String: Any], !keys.contains(path) {
                    walk(nested, prefix: path)
                } else if !keys.contains(path) {
                    unknown.append(path)
                }
            }
        }
        walk(top, prefix: "")
        guard unknown.isEmpty else {
            throw CommandFailure(
                message: "the configuration file \(file) has unknown keys: \(unknown.sorted().joined(separator: ", ")) "
                    + "(docs/CONFIGURATION.md lists the keys)"
            )
        }
    }

    private func read<T>(_ key: String, _ get: (ConfigKey) throws -> T) throws -> T? {
        do {
            return try get(ConfigKey(key.split(separator: ".").map(String.init)))
        } catch {
            // swift-configuration reports a missing value and a wrong type with one error type.
            if "\(error)".hasPrefix("Missing required config value") { return nil }
            throw CommandFailure(
                message: "configuration key \"\(key)\" (environment PARLEY_\(Self.environmentName(key))): \(error)"
            )
        }
    }

    func string(_ key: String, isSecret: Bool = false) throws -> String? {
        try read(key) { try reader.requiredString(forKey: $0, isSecret: isSecret) }
    }
    func int(_ key: String) throws -> Int? { try read(key) { try reader.requiredInt(forKey: $0) } }
    func bool(_ key: String) throws -> Bool? { try read(key) { try reader.requiredBool(forKey: $0) } }

    func double(_ key: String) throws -> Double? {
        // A JSON number without a fraction is an integer to the file provider.
        if let whole = try? int(key) { return Double(whole) }
        return try read(key) { try reader.requiredDouble(forKey: $0) }
    }

    /// `tls.certificate` -> `TLS_CERTIFICATE`, `maxConnections` -> `MAX_CONNECTIONS`.
    static func environmentName(_ key: String) -> String {
        var name = ""
        for character in key {
            if character == "." {
                name += "_"
            } else if character.isUppercase {
                name += "_" + character.uppercased()
            } else {
                name += character.uppercased()
            }
        }
        return name
    }
}
