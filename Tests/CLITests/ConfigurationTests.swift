import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `parley server --config FILE`: flags win over PARLEY_* variables, which win over the file,
/// which wins over the defaults; unknown keys and values of the wrong type are clear errors.
@Suite("server configuration", .serialized, .timeLimit(.minutes(2)))
struct ConfigurationTests {
    @Test("flags > environment > file > defaults, seen on /status")
    func precedence() async throws {
        try await withDataDirectory { directory in
            let file = directory.appendingPathComponent("server.json").path
            try """
            {"data": "\(directory.appendingPathComponent("data").path)", "host": "127.0.0.1", "port": 0,
             "name": "from-file", "heartbeat": 5, "idleTimeout": 20.5, "metricsAddress": "127.0.0.1:0",
             "tls": {"insecurePlaintext": false}}
            """.write(toFile: file, atomically: true, encoding: .utf8)
            let server = try ChildProcess(
                ["server", "--config", file, "--heartbeat", "9"],
                environment: ["PARLEY_NAME": "from-env", "PARLEY_HEARTBEAT": "7", "PARLEY_MAX_CONNECTIONS": "77"]
            )
            defer { server.signal(SIGTERM) }
            _ = try await server.line { $0.hasPrefix("listening on ") }
            let metrics = try await server.line { $0.hasPrefix("metrics on ") }.dropFirst("metrics on ".count)
            let url = try #require(URL(string: metrics + "/status"))
            let (data, _) = try await URLSession.shared.data(from: url)
            let status = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let settings = try #require(status["settings"] as? [String: Any])
            #expect(status["serverName"] as? String == "from-env", "the environment wins over the file")
            #expect(settings["heartbeatSeconds"] as? Double == 9, "the flag wins over the environment")
            #expect(settings["idleTimeoutSeconds"] as? Double == 20.5, "the file wins over the default")
            #expect(settings["maximumConnections"] as? Int == 77)
            #expect(settings["deliveryWindow"] as? Int == 512, "a default")
            #expect(settings["tls"] as? String == "self-signed")
        }
    }

    @Test("SIGHUP applies the log level and the connection limit, and names what needs a restart")
    func reload() async throws {
        try await withDataDirectory { directory in
            let file = directory.appendingPathComponent("server.json").path
            func write(_ extra: String) throws {
                try """
                {"data": "\(directory.appendingPathComponent("data").path)", "host": "127.0.0.1", "port": 0,
                 "metricsAddress": "127.0.0.1:0" \(extra)}
                """.write(toFile: file, atomically: true, encoding: .utf8)
            }
            try write(#", "logLevel": "notice", "maxConnections": 100"#)
            let server = try ChildProcess(["server", "--config", file])
            defer { server.signal(SIGTERM) }
            _ = try await server.line { $0.hasPrefix("listening on ") }
            let metrics = try await server.line { $0.hasPrefix("metrics on ") }.dropFirst("metrics on ".count)
            let statusURL = try #require(URL(string: metrics + "/status"))
            #expect(!server.errorOutput.contains(" info "), "notice hides info: \(server.errorOutput)")

            try write(#", "logLevel": "debug", "maxConnections": 3, "name": "renamed""#)
            server.signal(SIGHUP)
            try await server.waitForLog(containing: "configuration reloaded")
            try await server.waitForLog(containing: "need a restart")
            #expect(server.errorOutput.contains("logLevel=debug"), "\(server.errorOutput)")
            #expect(server.errorOutput.contains("keys=name"), "\(server.errorOutput)")
            let (data, _) = try await URLSession.shared.data(from: statusURL)
            let status = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect((status["settings"] as? [String: Any])?["maximumConnections"] as? Int == 3)
            #expect(status["serverName"] as? String == "parley", "a name change waits for a restart")

            // A broken file changes nothing and says why.
            try "{ not json".write(toFile: file, atomically: true, encoding: .utf8)
            server.signal(SIGHUP)
            try await server.waitForLog(containing: "the configuration is not valid; nothing changed")
        }
    }

    @Test("parley node --config: the file, the environment and flags in that order; no password in the file")
    func nodeConfiguration() async throws {
        try await withDataDirectory { directory in
            let file = directory.appendingPathComponent("node.json").path
            try """
            {"data": "\(directory.appendingPathComponent("node").path)", "name": "from-file",
             "listenHost": "127.0.0.1", "listenPort": 0, "peerTimeout": 4, "outboxExpiry": 3600}
            """.write(toFile: file, atomically: true, encoding: .utf8)
            let node = try ChildProcess(
                ["node", "--config", file, "--json", "--no-stdin-commands"],
                environment: ["PARLEY_NAME": "from-env"]
            )
            defer { node.signal(SIGTERM) }
            let started = try await node.line { $0.contains("\"event\":\"started\"") }
            let fields = try #require(try JSONSerialization.jsonObject(with: Data(started.utf8)) as? [String: Any])
            #expect(fields["name"] as? String == "from-env", "\(started)")

            try #"{"data": "/tmp/unused", "name": "x", "password": "secret"}"#
                .write(toFile: file, atomically: true, encoding: .utf8)
            let withPassword = try await parley(["node", "--config", file, "--no-stdin-commands"])
            #expect(withPassword.status != 0)
            #expect(withPassword.errorOutput.contains("unknown keys: password"), "\(withPassword)")

            let noName = try await parley(["node", "--data", directory.path, "--no-stdin-commands"])
            #expect(noName.errorOutput.contains("name is not set"), "\(noName)")
        }
    }

    @Test("unknown keys, values of the wrong type and a missing data directory are clear errors")
    func badConfiguration() async throws {
        try await withDataDirectory { directory in
            let file = directory.appendingPathComponent("server.json").path
            try #"{"data": "/tmp/unused", "prot": 1, "tls": {"certficate": "x"}}"#
                .write(toFile: file, atomically: true, encoding: .utf8)
            let unknown = try await parley(["server", "--config", file])
            #expect(unknown.status != 0)
            #expect(unknown.errorOutput.contains("unknown keys: prot, tls.certficate"), "\(unknown)")

            try #"{"data": "/tmp/unused", "port": "seventy"}"#.write(toFile: file, atomically: true, encoding: .utf8)
            let wrongType = try await parley(["server", "--config", file])
            #expect(wrongType.status != 0)
            #expect(wrongType.errorOutput.contains("configuration key \"port\""), "\(wrongType)")

            let badEnvironment = try await parley(
                ["server", "--data", directory.path], environment: ["PARLEY_DURABILITY": "sometimes"])
            #expect(badEnvironment.errorOutput.contains("durability must be normal or full"), "\(badEnvironment)")

            let badStorage = try await parley(
                ["server", "--data", directory.path], environment: ["PARLEY_MESSAGE_STORAGE": "paper"])
            #expect(badStorage.status != 0)
            #expect(badStorage.errorOutput.contains("messageStorage must be log or sqlite"), "\(badStorage)")

            let noData = try await parley(["server"])
            #expect(noData.status != 0)
            #expect(noData.errorOutput.contains("data directory is not set"), "\(noData)")
        }
    }
}
