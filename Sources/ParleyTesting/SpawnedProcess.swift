public import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// How a child process ended.
public enum Termination: Sendable, Equatable, CustomStringConvertible {
    case exit(Int32)
    case signal(Int32)

    /// Decodes a `waitpid` status.
    init(waitStatus status: Int32) {
        let signal = status & 0x7F
        self = signal == 0 ? .exit((status >> 8) & 0xFF) : .signal(signal)
    }

    /// The shell's number: the exit code, or 128 + the signal.
    public var shellStatus: Int32 {
        switch self {
        case .exit(let code): code
        case .signal(let signal): 128 + signal
        }
    }

    public var description: String {
        switch self {
        case .exit(let code): "exit \(code)"
        case .signal(let signal): "signal \(signal)"
        }
    }
}

/// A child process started with `posix_spawn`, its standard streams on pipes.
///
/// Tests used Foundation's `Process`, whose `run()` in this toolchain's swift-corelibs-foundation
/// sometimes crashed the whole test process (a buffer over-read while it lists the descriptors to
/// close, fixed upstream in swift-corelibs-foundation PR 5472). This is the small part of it the
/// tests need: no descriptor of the test process leaks into the child (tests run in parallel, and a
/// child holding another test's listening socket keeps that port busy), a clean signal state (the
/// test runner's threads block signals and a child would inherit the mask), and the exit reaped by
/// a thread of its own.
public final class SpawnedProcess: Sendable {
    /// What the child's standard input is.
    public enum Input: Sendable {
        /// `/dev/null`.
        case null
        /// A pipe whose write end is ``standardInput``.
        case pipe
    }

    public let pid: pid_t
    /// The write end of the child's standard input, if it is a pipe (closed by ``closeInput()``
    /// or when this object goes).
    public var standardInput: Int32? { input.withLock { $0 } }
    /// The read ends of the child's standard output and error; ``readToEnd(_:)`` and
    /// ``readChunks(_:_:)`` close them at the end.
    public let standardOutput: Int32
    public let standardError: Int32

    private let input: Mutex<Int32?>
    private let ended: Mutex<(termination: Termination?, waiters: [CheckedContinuation<Termination, Never>])>

    /// Starts `executable` (a path) with `arguments` and `environment` (the whole environment).
    public init(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        input: Input = .null
    ) throws {
        var pipes: [[Int32]] = []
        defer { for end in pipes.joined() where end >= 0 { close(end) } }
        for _ in 0..<3 {
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else { throw SpawnError("pipe failed: \(String(cString: strerror(errno)))") }
            // Close-on-exec everywhere; dup2 onto 0...2 in the child clears it for the child's copies.
            for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
            pipes.append(ends)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if case .pipe = input {
            posix_spawn_file_actions_adddup2(&actions, pipes[0][0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, pipes[1][1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipes[2][1], 2)
        // In the child, so that descriptors other tests open meanwhile cannot slip in.
        guard spawnFileActionsAddCloseFrom(&actions, 3) == 0 else {
            throw SpawnError("posix_spawn_file_actions_addclosefrom_np failed")
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT, SIGUSR1, SIGUSR2] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw SpawnError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        self.pid = pid
        self.input = Mutex(input == .pipe ? pipes[0][1] : nil)
        self.standardOutput = pipes[1][0]
        self.standardError = pipes[2][0]
        // What the parent keeps is not closed by the defer; the child's ends are.
        if input == .pipe { pipes[0][1] = -1 }
        pipes[1][0] = -1
        pipes[2][0] = -1
        self.ended = Mutex((nil, []))
        Thread.detachNewThread { [self] in reap() }
    }

    deinit {
        closeInput()
    }

    private func reap() {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let termination = Termination(waitStatus: status)
        let waiters = ended.withLock { ended in
            ended.termination = termination
            defer { ended.waiters = [] }
            return ended.waiters
        }
        for waiter in waiters { waiter.resume(returning: termination) }
    }

    /// How the child ended, or nil while it runs.
    public var termination: Termination? { ended.withLock { $0.termination } }

    /// Returns once the child has ended.
    public func waitForExit() async -> Termination {
        await withCheckedContinuation { continuation in
            let now = ended.withLock { ended -> Termination? in
                if let termination = ended.termination { return termination }
                ended.waiters.append(continuation)
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    /// Sends `signal` unless the child has been reaped (its PID may belong to another process then).
    public func signal(_ signal: Int32) {
        ended.withLock { ended in
            if ended.termination == nil { _ = kill(pid, signal) }
        }
    }

    /// Writes all of `bytes` to standard input. A child that closed its standard input (or
    /// exited) before reading all of it gets the rest dropped, not this process a SIGPIPE.
    public func write(_ bytes: some Collection<UInt8>) throws {
        Self.ignoreBrokenPipes()
        try input.withLock { descriptor in
            guard let descriptor else { throw SpawnError("standard input is not open") }
            var remaining = Array(bytes)[...]
            while !remaining.isEmpty {
                let written = remaining.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
                if written < 0 {
                    if errno == EINTR { continue }
                    if errno == EPIPE { return }
                    throw SpawnError("writing to the child failed: \(String(cString: strerror(errno)))")
                }
                remaining = remaining.dropFirst(written)
            }
        }
    }

    /// A write to a pipe whose reader is gone fails with EPIPE instead of killing the test
    /// process (children get the default disposition back, see `init`).
    private static func ignoreBrokenPipes() {
        _ = brokenPipesIgnored
    }

    private static let brokenPipesIgnored: Bool = {
        _ = Glibc.signal(SIGPIPE, SIG_IGN)
        return true
    }()

    /// Closes standard input (the child reads end of file).
    public func closeInput() {
        input.withLock { descriptor in
            if let open = descriptor { close(open) }
            descriptor = nil
        }
    }

    /// Reads `descriptor` (``standardOutput`` or ``standardError``) on the calling thread until end
    /// of file, handing each chunk to `chunk`, then closes it. Blocking: call it from a thread.
    public static func readChunks(_ descriptor: Int32, _ chunk: ([UInt8]) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            chunk(Array(buffer[0..<count]))
        }
        close(descriptor)
    }

    /// Reads `descriptor` to its end on a thread of its own.
    public static func readToEnd(_ descriptor: Int32) async -> [UInt8] {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var all: [UInt8] = []
                readChunks(descriptor) { all.append(contentsOf: $0) }
                continuation.resume(returning: all)
            }
        }
    }

    /// Runs `executable` to its end and returns how it ended and what it printed; sends SIGKILL
    /// after `timeout`.
    public static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        timeout: Duration = .seconds(60)
    ) async throws -> (termination: Termination, output: String, errorOutput: String) {
        let child = try SpawnedProcess(executable, arguments, environment: environment)
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            child.signal(SIGKILL)
        }
        async let output = readToEnd(child.standardOutput)
        async let errors = readToEnd(child.standardError)
        let termination = await child.waitForExit()
        watchdog.cancel()
        return (
            termination, String(decoding: await output, as: UTF8.self), String(decoding: await errors, as: UTF8.self)
        )
    }
}

/// Starting a child failed.
public struct SpawnError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// glibc 2.34+ (Debian 12 has 2.36); Swift's Glibc module does not import it because it is a
/// GNU extension. Two word-sized arguments and an Int32 result: the C and Swift calling
/// conventions agree on x86_64 and arm64.
@_silgen_name("posix_spawn_file_actions_addclosefrom_np")
private func spawnFileActionsAddCloseFrom(
    _ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>,
    _ lowest: Int32
) -> Int32
