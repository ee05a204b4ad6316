import Foundation
import ParleyTesting
import Synchronization
import Testing

/// A value that changes over time and can be awaited until it satisfies a condition.
final class Observed<Value: Sendable>: Sendable {
    private struct Waiter {
        let isSatisfied: @Sendable (Value) -> Bool
        let continuation: CheckedContinuation<Value, any Error>
    }

    private let state: Mutex<(value: Value, waiters: [UUID: Waiter])>

    init(_ value: Value) {
        state = Mutex((value, [:]))
    }

    var value: Value { state.withLock { $0.value } }

    func update(_ change: (inout Value) -> Void) {
        let ready = state.withLock { state -> [(CheckedContinuation<Value, any Error>, Value)] in
            change(&state.value)
            let value = state.value
            let satisfied = state.waiters.filter { $0.value.isSatisfied(value) }
            for id in satisfied.keys { state.waiters[id] = nil }
            return satisfied.values.map { ($0.continuation, value) }
        }
        for (continuation, value) in ready { continuation.resume(returning: value) }
    }

    /// Waits until `isSatisfied` holds, or throws when the task is cancelled.
    func wait(until isSatisfied: @escaping @Sendable (Value) -> Bool) async throws -> Value {
        let id = UUID()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let now = state.withLock { state -> Value? in
                    if isSatisfied(state.value) { return state.value }
                    state.waiters[id] = Waiter(isSatisfied: isSatisfied, continuation: continuation)
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }
}

/// How a child process ended (the spawning code is shared with the other test targets).
typealias Termination = ParleyTesting.Termination

/// The built `parley` executable, run as a child process with its output collected.
///
/// Output is read on dedicated threads as it comes, so a chatty child never blocks on a full
/// pipe and tests can wait for a particular line.
final class ChildProcess: Sendable {
    struct Stream: Sendable {
        var data = Data()
        var isClosed = false

        var text: String { String(decoding: data, as: UTF8.self) }
        /// Complete lines only.
        var lines: [String] {
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            lines.removeLast()
            return lines
        }
    }

    let arguments: [String]
    let standardOutput = Observed(Stream())
    let standardError = Observed(Stream())
    let termination = Observed<Termination?>(nil)
    let processIdentifier: Int32

    /// The package's `.build/debug/parley`, found from this file's path.
    static let executable: URL = {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // CLITests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // package root
            .appendingPathComponent(".build/debug/parley")
    }()

    private let child: SpawnedProcess
    /// Whether ``write(_:thenClose:)`` may write to standard input.
    private let keepsInputOpen: Bool

    /// Starts `parley` with `arguments`. `input`, when given, is written to its standard input,
    /// which is then closed unless `keepsInputOpen` (else standard input is /dev/null).
    /// `environment` is added to this process's environment for the child.
    init(
        _ arguments: [String],
        input: String? = nil,
        keepsInputOpen: Bool = false,
        environment extraEnvironment: [String: String] = [:]
    ) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable.path) else {
            throw TestFailure(
                "the parley executable is missing at \(Self.executable.path); build it with `swift build --product parley`"
            )
        }
        self.arguments = arguments
        // Every test server makes a new certificate, and a port may come back in a later test:
        // each process trusts on first use from its own empty known-servers file, unless the
        // test names one (--known-servers) or pins the fingerprint.
        var environment = ProcessInfo.processInfo.environment
        let knownServers = FileManager.default.temporaryDirectory
            .appendingPathComponent("parley-cli-known-servers-\(UUID().uuidString)").path
        environment["PARLEY_KNOWN_SERVERS"] = knownServers
        let child = try SpawnedProcess(
            Self.executable.path,
            arguments,
            environment: environment.merging(extraEnvironment) { _, new in new },
            input: input == nil ? .null : .pipe
        )
        self.child = child
        processIdentifier = child.pid
        let termination = self.termination
        Task {
            let ended = await child.waitForExit()
            // Its own known-servers file: nothing left behind in /tmp (thousands per test run).
            try? FileManager.default.removeItem(atPath: knownServers)
            termination.update { $0 = ended }
        }
        Self.collect(child.standardOutput, into: standardOutput)
        Self.collect(child.standardError, into: standardError)
        self.keepsInputOpen = keepsInputOpen
        if let input {
            try child.write(input.utf8)
            if !keepsInputOpen { child.closeInput() }
        }
    }

    /// Writes to standard input (started with `keepsInputOpen`), closing it after when asked.
    func write(_ text: String, thenClose: Bool = false) throws {
        guard keepsInputOpen, child.standardInput != nil else {
            throw TestFailure("the standard input of `\(commandLine)` is not open")
        }
        try child.write(text.utf8)
        if thenClose { child.closeInput() }
    }

    deinit {
        // Never leave a child behind when a test fails half-way.
        child.signal(SIGKILL)
    }

    private static func collect(_ descriptor: Int32, into stream: Observed<Stream>) {
        Thread.detachNewThread {
            SpawnedProcess.readChunks(descriptor) { chunk in stream.update { $0.data.append(contentsOf: chunk) } }
            stream.update { $0.isClosed = true }
        }
    }

    var commandLine: String { (["parley"] + arguments).joined(separator: " ") }
    var output: String { standardOutput.value.text }
    var outputLines: [String] { standardOutput.value.lines }
    var errorOutput: String { standardError.value.text }

    /// Sends a signal (SIGTERM, SIGKILL, ...).
    func signal(_ signal: Int32) {
        child.signal(signal)
    }

    /// Waits for the first line of standard output that satisfies `predicate`.
    @discardableResult
    func line(
        timeout: Duration = .seconds(30),
        where predicate: @escaping @Sendable (String) -> Bool
    ) async throws -> String {
        let stream = try await withTimeout("a line of `\(commandLine)`", timeout: timeout) {
            try await self.standardOutput.wait { $0.lines.contains(where: predicate) || $0.isClosed }
        }
        guard let line = stream.lines.first(where: predicate) else {
            throw TestFailure(
                "`\(commandLine)` closed its output without the expected line; "
                    + "stdout: \(stream.text) stderr: \(errorOutput)"
            )
        }
        return line
    }

    /// Waits until standard error (the log) contains `text`.
    func waitForLog(containing text: String, timeout: Duration = .seconds(30)) async throws {
        let stream = try await withTimeout("\"\(text)\" in the log of `\(commandLine)`", timeout: timeout) {
            try await self.standardError.wait { $0.text.contains(text) || $0.isClosed }
        }
        guard stream.text.contains(text) else {
            throw TestFailure("`\(commandLine)` ended without logging \"\(text)\": \(stream.text)")
        }
    }

    /// Waits for the process to end and for all of its output.
    @discardableResult
    func waitForExit(timeout: Duration = .seconds(60)) async throws -> Termination {
        let ended = try await withTimeout("`\(commandLine)` to exit", timeout: timeout) {
            let ended = try await self.termination.wait { $0 != nil }
            _ = try await self.standardOutput.wait { $0.isClosed }
            _ = try await self.standardError.wait { $0.isClosed }
            return ended
        }
        return ended ?? .exit(-1)
    }
}

/// A test failure with a message.
struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What a finished `parley` command printed, and how it ended.
struct CommandResult: Sendable, CustomStringConvertible {
    var termination: Termination
    var output: String
    var errorOutput: String

    var lines: [String] { output.split(separator: "\n").map(String.init) }
    var status: Int32? {
        if case .exit(let status) = termination { return status }
        return nil
    }

    /// Every line of standard output as a JSON object.
    func jsonLines() throws -> [[String: Any]] {
        try lines.map { line in
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw TestFailure("not a JSON object: \(line)")
            }
            return object
        }
    }

    var description: String { "\(termination); stdout: \(output)stderr: \(errorOutput)" }
}

/// Runs `parley` with `arguments` to its end.
func parley(
    _ arguments: [String],
    input: String? = nil,
    environment: [String: String] = [:],
    timeout: Duration = .seconds(60)
) async throws -> CommandResult {
    let child = try ChildProcess(arguments, input: input, environment: environment)
    let termination = try await child.waitForExit(timeout: timeout)
    return CommandResult(termination: termination, output: child.output, errorOutput: child.errorOutput)
}
