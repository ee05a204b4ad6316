import Dispatch
import Foundation
import Logging
import ParleyAvahi
import ParleyCore
import ParleyDiscovery

/// parley-discovery-probe: advertises one node with AvahiDiscovery and prints what it sees as
/// JSON lines on standard output. Used by the LAN lab tests inside network namespaces.
///
///     parley-discovery-probe --node ID [--instance NAME] [--port N] [--uid N] [--user NAME]
///         [--server S] [--status S] [--type _parley._tcp] [--retry SECONDS] [--no-advertise]
///         [--log-level trace|debug|info|notice|warning|error]
///
/// Output lines: {"event":"start"}, {"event":"up"|"changed","peer":{...}}, {"event":"down","node":...},
/// {"event":"log","level":...,"message":...,"metadata":{...}}, {"event":"stopped"}; each has "ms",
/// the milliseconds since the probe's main function started.
/// Commands on standard input, one per line: `status VALUE`, `user NAME`, `withdraw`,
/// `advertise`, `quit`. SIGTERM and SIGINT stop it gracefully (the service is withdrawn).
@main
struct DiscoveryProbe {
    struct Options {
        /// The node ID is a placeholder until ``parse(_:)`` sets `--node`'s.
        var record = ServiceRecord(
            instanceName: "",
            port: 7000,
            nodeID: NodeID(digest: Array(repeating: 0, count: NodeID.digestLength))!
        )
        var serviceType = "_parley._tcp"
        var retryDelay = Duration.seconds(1)
        var advertise = true
        var logLevel = Logger.Level.info
    }

    static func main() async {
        // Starts the clock of the "ms" fields (a lazy static): as early as the probe can.
        _ = ProbeOutput.elapsedMilliseconds
        let options: Options
        do {
            options = try parse(Array(CommandLine.arguments.dropFirst()))
        } catch {
            FileHandle.standardError.write(Data("parley-discovery-probe: \(error)\n".utf8))
            exit(64)
        }
        let level = options.logLevel
        LoggingSystem.bootstrap { label in JSONLineLogHandler(label: label, logLevel: level) }
        let logger = Logger(label: "parley.discovery")

        let discovery: AvahiDiscovery
        do {
            discovery = try AvahiDiscovery(
                configuration: .init(
                    ownNodeID: options.record.nodeID, serviceType: options.serviceType,
                    retryDelay: options.retryDelay),
                logger: logger)
        } catch {
            ProbeOutput.emit(["event": "error", "message": "\(error)"])
            exit(1)
        }
        ProbeOutput.emit([
            "event": "start", "node": options.record.nodeID.description, "instance": options.record.instanceName,
            "pid": Int(getpid()),
        ])
        let record = options.record
        if options.advertise {
            do {
                try await discovery.advertise(record)
            } catch {
                ProbeOutput.emit(["event": "error", "message": "\(error)"])
                exit(1)
            }
        }
        let signals = stopOnSignals(discovery)
        let commands = readCommands()

        var status: Int32 = 0
        await withTaskGroup(of: Int32.self) { group in
            group.addTask {
                do {
                    try await discovery.run()
                    return 0
                } catch {
                    ProbeOutput.emit(["event": "error", "message": "\(error)"])
                    return 1
                }
            }
            group.addTask {
                var record = record  // the commands edit their own copy
                for await line in commands {
                    await handle(line, record: &record, discovery: discovery)
                }
                return 0
            }
            for await event in discovery.peerEvents {
                ProbeOutput.emit(event)
            }
            // peerEvents ends when run() has shut down
            status = await group.next() ?? 0
            group.cancelAll()
        }
        withExtendedLifetime(signals) {}
        ProbeOutput.emit(["event": "stopped"])
        exit(status)
    }

    static func handle(_ line: String, record: inout ServiceRecord, discovery: AvahiDiscovery) async {
        let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
        guard let command = parts.first else { return }
        let argument = parts.count > 1 ? parts[1] : ""
        do {
            switch command {
            case "status":
                record.status = argument
                try await discovery.update(record)
            case "user":
                record.userName = argument
                try await discovery.update(record)
            case "advertise":
                try await discovery.advertise(record)
            case "withdraw":
                await discovery.withdraw()
            case "quit":
                discovery.shutDown()
                return
            default:
                ProbeOutput.emit(["event": "error", "message": "unknown command \(command)"])
                return
            }
            ProbeOutput.emit(["event": "done", "command": command])
        } catch {
            ProbeOutput.emit(["event": "error", "command": command, "message": "\(error)"])
        }
    }

    /// SIGTERM / SIGINT shut discovery down gracefully.
    static func stopOnSignals(_ discovery: AvahiDiscovery) -> [any DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { discovery.shutDown() }
            source.resume()
            return source
        }
    }

    /// Lines from standard input, read on a thread of their own (readLine blocks).
    static func readCommands() -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(64))
        let thread = Thread {
            while let line = readLine() {
                continuation.yield(line.trimmingCharacters(in: .whitespaces))
            }
            continuation.finish()
        }
        thread.start()
        return stream
    }

    struct UsageError: Error, CustomStringConvertible {
        let description: String
    }

    static func parse(_ arguments: [String]) throws -> Options {
        var options = Options()
        var nodeID: NodeID?
        var iterator = arguments.makeIterator()
        func value(_ flag: String) throws -> String {
            guard let value = iterator.next() else { throw UsageError(description: "\(flag) needs a value") }
            return value
        }
        while let flag = iterator.next() {
            switch flag {
            case "--node":
                guard let given = NodeID(try value(flag)) else {
                    throw UsageError(description: "--node needs a node ID (52 base32 characters)")
                }
                nodeID = given
            case "--instance": options.record.instanceName = try value(flag)
            case "--port":
                guard let port = UInt16(try value(flag)) else { throw UsageError(description: "bad --port") }
                options.record.port = port
            case "--uid":
                guard let uid = UInt32(try value(flag)) else { throw UsageError(description: "bad --uid") }
                options.record.userID = uid
            case "--user": options.record.userName = try value(flag)
            case "--server": options.record.server = try value(flag)
            case "--status": options.record.status = try value(flag)
            case "--type": options.serviceType = try value(flag)
            case "--retry":
                guard let seconds = Double(try value(flag)), seconds > 0 else {
                    throw UsageError(description: "bad --retry")
                }
                options.retryDelay = .milliseconds(Int(seconds * 1000))
            case "--no-advertise": options.advertise = false
            case "--log-level":
                guard let level = Logger.Level(rawValue: try value(flag)) else {
                    throw UsageError(description: "bad --log-level")
                }
                options.logLevel = level
            default: throw UsageError(description: "unknown argument \(flag)")
            }
        }
        guard let nodeID else { throw UsageError(description: "--node is required") }
        options.record.nodeID = nodeID
        if options.record.instanceName.isEmpty { options.record.instanceName = "parley \(options.record.nodeID)" }
        return options
    }
}
