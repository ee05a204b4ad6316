import Foundation
public import ParleyCore
import ParleyTesting
import Synchronization
import Testing

/// The LAN lab (`scripts/lan-lab.sh`) and the processes the lab tests run inside it.
enum Lab {
    /// The lab script, found by walking up from this file (works through the scratch package's
    /// symlinks too); `PARLEY_LAN_LAB` overrides it.
    static let script: String = {
        if let path = ProcessInfo.processInfo.environment["PARLEY_LAN_LAB"] { return path }
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("scripts/lan-lab.sh").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        return "scripts/lan-lab.sh"
    }()

    /// The node ID the lab's probes use for a readable label such as "n1" (``NodeID/named(_:)``).
    static func nodeID(_ label: String) -> String {
        NodeID.named(label).description
    }

    /// The probe executable: in the test binary's build folder, or `PARLEY_DISCOVERY_PROBE`.
    static let probe: String = {
        if let path = ProcessInfo.processInfo.environment["PARLEY_DISCOVERY_PROBE"] { return path }
        var directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {  // the test binary may sit inside a bundle folder on some layouts
            // the product's name, or the target's when a package declares no product for it
            for name in ["parley-discovery-probe", "ParleyDiscoveryProbe"] {
                let candidate = directory.appendingPathComponent(name).path
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            }
            directory.deleteLastPathComponent()
        }
        return "parley-discovery-probe"
    }()

    static let isRoot = getuid() == 0

    struct CommandError: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs the lab script to completion (at most `timeout`) and returns its standard output.
    @discardableResult
    static func run(
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: Duration = .seconds(60)
    ) async throws -> String {
        let process = try LabProcess(
            name: "lan-lab.sh \(arguments.joined(separator: " "))", arguments: arguments,
            environment: environment)
        let status = try await process.waitForExit(timeout: timeout)
        await process.waitForOutputEnd()
        let lines = process.lines
        let output = lines.filter { $0.event != "stderr" }.map(\.raw).joined(separator: "\n")
        guard status == 0 else {
            throw CommandError(description: "\(process.name) exited \(status):\n\(process.transcript())")
        }
        return output
    }

    /// Brings up a lab of `hosts` hosts, runs `body`, and always tears the lab down.
    /// `nics`: 1 (eth0 only) or 2 (every host also has eth1, on a second bridge and subnet:
    /// 10.241.0.N next to the discovery lab's 10.231.0.N; see `scripts/lan-lab.sh`).
    static func with(
        hosts: Int,
        ipv6: String = "0",
        nics: Int = 1,
        _ body: (LabSession) async throws -> Void
    ) async throws {
        let environment = ["PARLEYLAB_IPV6": ipv6, "PARLEYLAB_NICS": "\(nics)"]
        try await run(["up", "\(hosts)"], environment: environment)
        let session = LabSession(environment: environment)
        do {
            try await body(session)
        } catch {
            session.dumpOutput()
            await session.stopAll()
            try await run(["down"])
            throw error
        }
        await session.stopAll()
        try await run(["down"])
    }
}

/// One lab run: starts probes and other programs on hosts, injects daemon failures.
final class LabSession: Sendable {
    let environment: [String: String]
    private let processes = Mutex<[LabProcess]>([])

    init(environment: [String: String]) {
        // Lab servers make new certificates on addresses that come back: the session's `parley`
        // commands trust on first use from a known-servers file of their own.
        var environment = environment
        environment["PARLEY_KNOWN_SERVERS"] =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("parley-lab-known-servers-\(UUID().uuidString)").path
        self.environment = environment
    }

    /// Starts the probe on `host` (e.g. "h1"); `prefix` goes before the probe path
    /// (e.g. `["env", "DBUS_SYSTEM_BUS_ADDRESS=..."]`).
    func probe(_ host: String, _ arguments: [String], prefix: [String] = []) throws -> LabProcess {
        try start(host, prefix + [Lab.probe] + arguments, name: "probe@\(host)")
    }

    /// Starts any command on `host`; it runs until it exits or the lab goes down.
    func start(_ host: String, _ command: [String], name: String) throws -> LabProcess {
        let process = try LabProcess(name: name, arguments: ["exec", host] + command, environment: environment)
        processes.withLock { $0.append(process) }
        return process
    }

    func avahi(_ host: String, _ action: String) async throws {
        try await Lab.run(["avahi", host, action], environment: environment)
    }

    /// Takes one interface of `host` down or brings it up again (`lan-lab.sh link`); the
    /// interface keeps its addresses.
    func link(_ host: String, _ interface: String, up: Bool) async throws {
        try await Lab.run(["link", host, interface, up ? "up" : "down"], environment: environment)
    }

    func run(_ host: String, _ command: [String]) async throws -> String {
        try await Lab.run(["exec", host] + command, environment: environment)
    }

    func busAddress(_ host: String) async throws -> String {
        try await Lab.run(["bus", host], environment: environment).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// SIGTERM to everything started here, then waits (bounded) for each to exit.
    func stopAll() async {
        let all = processes.withLock { $0 }
        for process in all { process.terminate() }
        for process in all { _ = try? await process.waitForExit(timeout: .seconds(5)) }
        // The session's known-servers file: nothing left behind in /tmp.
        if let knownServers = environment["PARLEY_KNOWN_SERVERS"] {
            try? FileManager.default.removeItem(atPath: knownServers)
        }
    }

    func dumpOutput() {
        for process in processes.withLock({ $0 }) {
            print("---- \(process.name) ----\n\(process.transcript())")
        }
    }
}

/// A line a process printed (decoded when it is one of the probe's JSON lines), with the moment
/// it arrived.
struct ProbeLine: Decodable, Sendable {
    struct Address: Decodable, Sendable, Hashable {
        var host: String
        var port: Int
        var interface: String
    }

    struct PeerFields: Decodable, Sendable {
        var node: String
        var instance: String
        var uid: UInt32?
        var name: String?
        var srv: String?
        var st: String?
        var pv: Int
        var addresses: [Address]
    }

    /// The probe's event, or "text" / "stderr" for other output.
    var event: String
    var ms: Double?
    var node: String?
    var peer: PeerFields?
    var level: String?
    var message: String?
    var metadata: [String: String]?
    var command: String?
    var arrived: ContinuousClock.Instant = .now
    var raw = ""

    private enum CodingKeys: String, CodingKey {
        case event, ms, node, peer, level, message, metadata, command
    }

    /// The node of an up/changed/down event.
    var eventNode: String? { peer?.node ?? (event == "down" ? node : nil) }
    var isWarning: Bool { event == "log" && level == "warning" }
    var isAdvertised: Bool { event == "log" && message == "advertised on the LAN" }

    /// Whether this is `event` for the probe labelled `label` (``Lab/nodeID(_:)``).
    func isPeer(_ event: String, _ label: String) -> Bool { self.event == event && eventNode == Lab.nodeID(label) }
}

struct WaitTimeout: Error, CustomStringConvertible {
    let description: String
}

/// `lan-lab.sh ARGUMENTS...` as a child process: its output lines are collected and can be
/// awaited with a deadline (no fixed sleeps); its standard input takes commands.
///
/// Started with posix_spawn and reaped by a thread blocked in waitpid: Foundation's `Process`
/// never noticed its children's exit inside the test runner here (waitUntilExit hung on a zombie).
final class LabProcess: Sendable {
    let name: String
    let started: ContinuousClock.Instant
    let pid: pid_t
    private let child: SpawnedProcess
    private let state = Mutex(State())

    private struct State {
        var lines: [ProbeLine] = []
        var endedStreams = 0
        var waiters: [Int: Waiter] = [:]
        var nextWaiter = 0
        var exitStatus: Int32?
        var exitWaiters: [Int: CheckedContinuation<Int32?, Never>] = [:]
    }

    private struct Waiter {
        let from: Int
        let predicate: @Sendable (ProbeLine) -> Bool
        let continuation: CheckedContinuation<ProbeLine?, Never>
    }

    init(name: String, arguments: [String], environment: [String: String]) throws {
        self.name = name
        let merged = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let child = try SpawnedProcess("/bin/bash", [Lab.script] + arguments, environment: merged, input: .pipe)
        self.child = child
        self.pid = child.pid
        self.started = .now
        Thread.detachNewThread { [self] in readLines(child.standardOutput, isStandardError: false) }
        Thread.detachNewThread { [self] in readLines(child.standardError, isStandardError: true) }
        Task { [self] in ended(await child.waitForExit()) }
    }

    private func ended(_ termination: Termination) {
        // exit code, or 128 + signal number as a shell reports it
        let code = termination.shellStatus
        let waiters = state.withLock { state in
            state.exitStatus = code
            defer { state.exitWaiters.removeAll() }
            return Array(state.exitWaiters.values)
        }
        for waiter in waiters { waiter.resume(returning: code) }
    }

    /// Delivers each line: JSON lines from stdout decoded, anything else as event "text"
    /// (stdout) or "stderr".
    private func readLines(_ descriptor: Int32, isStandardError: Bool) {
        var buffer: [UInt8] = []
        SpawnedProcess.readChunks(descriptor) { chunk in
            buffer.append(contentsOf: chunk)
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let lineBytes = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                var line = ProbeLine(event: isStandardError ? "stderr" : "text")
                if !isStandardError, lineBytes.first == UInt8(ascii: "{"),
                    let decoded = try? JSONDecoder().decode(ProbeLine.self, from: Data(lineBytes))
                {
                    line = decoded
                }
                line.arrived = .now
                line.raw = String(decoding: lineBytes, as: UTF8.self)
                deliver(line)
            }
        }
        let waiters = state.withLock { state -> [Waiter] in
            state.endedStreams += 1
            guard state.endedStreams == 2 else { return [] }
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
    }

    private func deliver(_ line: ProbeLine) {
        let matched = state.withLock { state -> [Waiter] in
            state.lines.append(line)
            let index = state.lines.count - 1
            let ready = state.waiters.filter { $0.value.from <= index && $0.value.predicate(line) }
            for key in ready.keys { state.waiters[key] = nil }
            return Array(ready.values)
        }
        for waiter in matched { waiter.continuation.resume(returning: line) }
    }

    /// Every line so far.
    var lines: [ProbeLine] { state.withLock { $0.lines } }

    /// The first line at index `from` or later that matches, waiting up to `timeout` for it.
    @discardableResult
    func waitFor(
        _ what: String,
        from: Int = 0,
        timeout: Duration = .seconds(30),
        _ predicate: @escaping @Sendable (ProbeLine) -> Bool
    ) async throws -> ProbeLine {
        let found = await withDeadline(timeout) { await self.match(from: from, predicate) }
        guard let found else {
            throw WaitTimeout(description: "\(name): no \(what) within \(timeout)\n--- output ---\n\(transcript())")
        }
        return found
    }

    /// Returns once both output streams are closed.
    func waitForOutputEnd() async {
        _ = await match(from: .max) { _ in false }
    }

    private func match(from: Int, _ predicate: @escaping @Sendable (ProbeLine) -> Bool) async -> ProbeLine? {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<ProbeLine?, Never>) in
                let immediate = state.withLock { state -> ProbeLine?? in
                    if from < state.lines.count, let line = state.lines[from...].first(where: predicate) {
                        return .some(line)
                    }
                    if state.endedStreams == 2 || Task.isCancelled { return .some(nil) }
                    state.waiters[id] = Waiter(from: from, predicate: predicate, continuation: continuation)
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume(returning: nil)
        }
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code (128 + signal).
    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        let status = await withDeadline(timeout) {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Int32?, Never>) in
                    let immediate = self.state.withLock { state -> Int32?? in
                        if let status = state.exitStatus { return .some(status) }
                        if Task.isCancelled { return .some(nil) }
                        state.exitWaiters[id] = continuation
                        return .none
                    }
                    if let immediate { continuation.resume(returning: immediate) }
                }
            } onCancel: {
                let waiter = self.state.withLock { $0.exitWaiters.removeValue(forKey: id) }
                waiter?.resume(returning: nil)
            }
        }
        guard let status else { throw WaitTimeout(description: "\(name) did not exit within \(timeout)") }
        return status
    }

    /// Sends one command line to the process's standard input.
    func send(_ line: String) throws {
        do {
            try child.write((line + "\n").utf8)
        } catch {
            throw Lab.CommandError(description: "\(name): stdin write failed: \(error)")
        }
    }

    /// SIGTERM (graceful stop), if it still runs.
    func terminate() {
        child.signal(SIGTERM)
    }

    func transcript() -> String {
        state.withLock { $0.lines.map { ($0.event == "stderr" ? "[stderr] " : "") + $0.raw }.joined(separator: "\n") }
    }
}

/// Seconds with millisecond precision, for reports.
func seconds(_ duration: Duration) -> String {
    let (whole, atto) = duration.components
    let millis = Double(whole) * 1000 + Double(atto) / 1e15
    return String(format: "%.3f s", millis / 1000)
}

/// In these tests a string literal names a node by its lab label (``Lab/nodeID(_:)``), so that
/// records and events read `"n1"` instead of 52 base32 characters.
extension NodeID: ExpressibleByStringLiteral {
    public init(stringLiteral label: String) {
        self = .named(label)
    }
}
