import Foundation
import NIOCore
import NIOPosix
import ParleyCore
import ParleyWire

/// The mass reconnect of `parley bench --lean --reconnect-ready-file PATH` (issue 8 item 5):
/// raw connections on one event-loop thread, like the lean message load, so that the server and
/// not the generator limits the figures. Plaintext, or TLS with one TLS context for all the
/// connections (`tls`), so that the storm includes the server's TLS handshakes.
///
/// Every client registers (a bounded number of REGISTERs in flight: the server hashes each
/// password) and keeps the resumption token the answer carries (docs/PROTOCOL.md section
/// 9.2.1). Then PATH is written and the run waits for whoever waits for PATH
/// (scripts/bench-reconnect.sh) to kill the server and start it again on the same port and data
/// directory: first until every connection is closed, then until a probe connection is
/// accepted. At that moment, the start of the storm, every client connects at once and sends
/// HELLO, then LOGON with its user ID and token and no password. The run ends when every client
/// is logged on or has failed for good.
///
/// Everything runs on the one event loop: no locks. (Hence `@unchecked Sendable`: the object is
/// handed to that loop and only used there.)
final class LeanReconnect: @unchecked Sendable {
    struct Plan: Sendable {
        var host: String
        var port: Int
        var clients: Int
        var readyFile: String
        /// A file holding the restarted server's process ID (same machine), read at the start of
        /// the storm: the report then has the server's CPU time during the storm.
        var serverPIDFile: String?
        var deadline: ContinuousClock.Instant
        /// Adds TLS in front of each connection's handlers; nil for plaintext.
        var tls: (@Sendable (ChannelPipeline.SynchronousOperations) throws -> Void)?
    }

    /// `{"clients":..,"loggedOn":..,"seconds":..,"logonsPerSecond":..,"p50Ms":..,...}`
    struct Report: Encodable {
        var clients: Int
        /// Clients logged on again by their tokens.
        var loggedOn: Int
        /// From the start of the storm (the restarted server accepted a probe connection) to the
        /// last logon.
        var seconds: Double
        var logonsPerSecond: Double
        /// Per client, from the start of the storm to its LOGON's answer.
        var p50Ms: Double?
        var p99Ms: Double?
        var maxMs: Double?
        /// From the first closed connection (the server died) to the start of the storm.
        var serverDownSeconds: Double
        /// LOGONs refused, by error code (a refused token is not retried; TOO_MANY_ATTEMPTS is,
        /// after its retry_after_ms, and counted here each time).
        var refusalsByCode: [String: Int]
        /// Connections that failed or closed before their logon's answer, each tried again.
        var connectionRetries: Int
        var firstConnectionFailure: String?
        /// Answers whose new token differs from the one presented (rotation; must be loggedOn).
        var tokensRotated: Int
        var benchCPUSeconds: Double
        var benchCores: Double?
        var serverCPUSeconds: Double?
        var serverCores: Double?
        var serverMicrosecondsPerLogon: Double?
        var serverPeakRSSMiB: Double?

        var summary: String {
            func ms(_ value: Double?) -> String { value.map { String(format: "%.1f ms", $0) } ?? "-" }
            var text = """
                \(loggedOn) of \(clients) clients logged on again by resumption token in \
                \(String(format: "%.3f", seconds)) s from the start of the storm \
                (\(String(format: "%.0f", logonsPerSecond)) logons/s; server down \
                \(String(format: "%.2f", serverDownSeconds)) s before it)
                time to logged on, per client: p50 \(ms(p50Ms)), p99 \(ms(p99Ms)), max \(ms(maxMs))
                refusals by code: \(refusalsByCode.isEmpty ? "none" : refusalsByCode.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
                connection retries: \(connectionRetries)\(firstConnectionFailure.map { " (first: \($0))" } ?? "")
                \(tokensRotated) answers carried a new token
                bench CPU \(String(format: "%.2f s", benchCPUSeconds))\(benchCores.map { String(format: " (%.2f cores)", $0) } ?? "")
                """
            if let serverCPUSeconds {
                text += String(format: "\nserver CPU %.2f s during the storm", serverCPUSeconds)
                if let serverCores { text += String(format: " (%.2f cores)", serverCores) }
                if let serverMicrosecondsPerLogon {
                    text += String(format: ", %.0f µs per logon", serverMicrosecondsPerLogon)
                }
            }
            if let serverPeakRSSMiB { text += String(format: "\nserver peak memory %.1f MiB", serverPeakRSSMiB) }
            return text
        }
    }

    static func run(_ plan: Plan) async throws -> Report {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let done = loop.makePromise(of: Report.self)
        let result: Result<Report, any Error>
        do {
            let address = try SocketAddress.makeAddressResolvingHost(plan.host, port: plan.port)
            let run = try await loop.submit { LeanReconnect(plan: plan, address: address, loop: loop, done: done) }
                .get()
            loop.execute { run.start() }
            do {
                result = .success(try await done.futureResult.get())
            } catch {
                result = .failure(error)
            }
            try? await loop.submit { run.closeAll() }.get()
        } catch {
            done.fail(error)
            result = .failure(error)
        }
        try? await group.shutdownGracefully()
        return try result.get()
    }

    private enum Phase {
        case registering
        case waitingForDisconnects
        case waitingForServer
        case storm
        case finished
    }

    private static let registrationsInFlight = 32
    /// The pause before a failed connection is tried again, and between probes.
    private static let retryPause = TimeAmount.milliseconds(100)
    private static let probePause = TimeAmount.milliseconds(10)

    private let plan: Plan
    private let address: SocketAddress
    private let loop: any EventLoop
    private let done: EventLoopPromise<Report>
    private let bootstrap: ClientBootstrap
    private var clients: [ReconnectClient] = []
    private var phase = Phase.registering
    private let password = "lean-\(UInt64.random(in: 0...UInt64.max))"
    private let prefix = "lean-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)

    private var nextToRegister = 0
    private var registered = 0
    private var disconnected = 0
    private var firstDisconnect: ContinuousClock.Instant?

    // The storm.
    private var stormStart: ContinuousClock.Instant?
    private var serverPID: Int32?
    private var serverCPUStart: Double?
    private var ownCPUStart = 0.0
    private var loggedOn = 0
    private var failedForGood = 0
    private var lastLogon: ContinuousClock.Instant?
    private var latency = LatencySummary()
    private var maxLatency: Int64 = 0
    private var refusals: [String: Int] = [:]
    private var connectionRetries = 0
    private var firstConnectionFailure: String?
    private var tokensRotated = 0

    private init(plan: Plan, address: SocketAddress, loop: any EventLoop, done: EventLoopPromise<Report>) {
        self.plan = plan
        self.address = address
        self.loop = loop
        self.done = done
        // The kernel retries a SYN the listener's full backlog dropped (1 s, then 3 s, ...):
        // a long connect timeout leaves that to it.
        let tls = plan.tls
        self.bootstrap = ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(30))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try tls?(channel.pipeline.syncOperations) }
            }
    }

    private func start() {
        clients = (0..<plan.clients).map { ReconnectClient(index: $0, run: self) }
        for client in clients.prefix(Self.registrationsInFlight) { connect(client) }
        nextToRegister = min(Self.registrationsInFlight, clients.count)
        loop.scheduleTask(in: .nanoseconds(max(0, (plan.deadline - .now).nanoseconds))) {
            self.finish(timedOut: true)
        }
    }

    fileprivate func connect(_ client: ReconnectClient) {
        guard phase != .finished else { return }
        bootstrap.connect(to: address).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                client.connected(channel)
            case .failure(let error):
                self.connectionFailed(client, "\(error)")
            }
        }
    }

    // MARK: Registering

    fileprivate func registeredOne() {
        registered += 1
        if nextToRegister < clients.count {
            connect(clients[nextToRegister])
            nextToRegister += 1
        }
        guard registered == clients.count else { return }
        phase = .waitingForDisconnects
        do {
            try Data("\(clients.count) clients logged on\n".utf8).write(to: URL(fileURLWithPath: plan.readyFile))
        } catch {
            fail("cannot write \(plan.readyFile): \(error)")
        }
    }

    /// A connection closed. Before the storm that is the server going away.
    fileprivate func lostConnection(_ client: ReconnectClient) {
        switch phase {
        case .registering:
            fail("the server closed connection \(client.index) while the clients registered")
        case .waitingForDisconnects:
            if firstDisconnect == nil { firstDisconnect = .now }
            disconnected += 1
            if disconnected == clients.count {
                phase = .waitingForServer
                probe()
            }
        case .waitingForServer, .storm, .finished:
            break
        }
    }

    /// Tries to connect until the restarted server accepts, then starts the storm.
    private func probe() {
        guard phase == .waitingForServer else { return }
        bootstrap.connect(to: address).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                channel.close(promise: nil)
                self.startStorm()
            case .failure:
                self.loop.scheduleTask(in: Self.probePause) { self.probe() }
            }
        }
    }

    // MARK: The storm

    private func startStorm() {
        guard phase == .waitingForServer else { return }
        phase = .storm
        if let file = plan.serverPIDFile,
            let text = try? String(contentsOfFile: file, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            serverPID = pid
            serverCPUStart = CPUUsage.seconds(ofProcess: pid)
        }
        ownCPUStart = CPUUsage.ownSeconds()
        let start = ContinuousClock.now
        stormStart = start
        for client in clients {
            client.stormStarted(at: start)
            connect(client)
        }
    }

    fileprivate var isStorming: Bool { phase == .storm }

    fileprivate func connectionFailed(_ client: ReconnectClient, _ reason: String) {
        guard phase == .storm else {
            fail("connection \(client.index): \(reason)")
            return
        }
        connectionRetries += 1
        if firstConnectionFailure == nil { firstConnectionFailure = reason }
        loop.scheduleTask(in: Self.retryPause) { self.connect(client) }
    }

    fileprivate func loggedOn(_ client: ReconnectClient, after nanoseconds: Int64, rotated: Bool) {
        loggedOn += 1
        if rotated { tokensRotated += 1 }
        latency.record(nanoseconds: nanoseconds)
        maxLatency = max(maxLatency, nanoseconds)
        lastLogon = .now
        checkFinished()
    }

    fileprivate func refused(_ client: ReconnectClient, _ error: ParleyError) {
        refusals["\(error.code)", default: 0] += 1
        if error.code == .tooManyAttempts {
            let wait = TimeAmount.milliseconds(Int64(error.retryAfterMilliseconds ?? 250))
            loop.scheduleTask(in: wait) { client.logOn() }
        } else {
            failedForGood += 1
            checkFinished()
        }
    }

    private func checkFinished() {
        if loggedOn + failedForGood == clients.count { finish(timedOut: false) }
    }

    fileprivate func fail(_ message: String) {
        guard phase != .finished else { return }
        phase = .finished
        done.fail(CommandFailure(message: message, exitCode: ExitStatus.failure))
    }

    private func finish(timedOut: Bool) {
        guard phase != .finished else { return }
        let reached = phase
        phase = .finished
        guard reached == .storm, let stormStart else {
            let what =
                reached == .registering ? "registering \(clients.count) users" : "waiting for the server's restart"
            done.fail(
                CommandFailure(message: "\(what) did not finish within the timeout", exitCode: ExitStatus.incomplete))
            return
        }
        let end = timedOut ? ContinuousClock.now : lastLogon ?? .now
        let seconds = Double((end - stormStart).nanoseconds) / 1e9
        let wall = Double((ContinuousClock.now - stormStart).nanoseconds) / 1e9
        let own = CPUUsage.ownSeconds() - ownCPUStart
        var report = Report(
            clients: clients.count,
            loggedOn: loggedOn,
            seconds: seconds,
            logonsPerSecond: seconds > 0 ? Double(loggedOn) / seconds : 0,
            p50Ms: latency.percentile(0.5),
            p99Ms: latency.percentile(0.99),
            maxMs: loggedOn > 0 ? Double(maxLatency) / 1e6 : nil,
            serverDownSeconds: firstDisconnect.map { Double((stormStart - $0).nanoseconds) / 1e9 } ?? 0,
            refusalsByCode: refusals,
            connectionRetries: connectionRetries,
            firstConnectionFailure: firstConnectionFailure,
            tokensRotated: tokensRotated,
            benchCPUSeconds: own,
            benchCores: wall > 0 ? own / wall : nil
        )
        if let serverPID, let serverCPUStart, let serverEnd = CPUUsage.seconds(ofProcess: serverPID) {
            let cpu = serverEnd - serverCPUStart
            report.serverCPUSeconds = cpu
            report.serverCores = wall > 0 ? cpu / wall : nil
            report.serverMicrosecondsPerLogon = loggedOn > 0 ? cpu * 1e6 / Double(loggedOn) : nil
            report.serverPeakRSSMiB = CPUUsage.peakResidentBytes(ofProcess: serverPID).map { Double($0) / 1_048_576 }
        }
        done.succeed(report)
    }

    fileprivate var passwordForRegistration: String { password }

    fileprivate func name(of client: ReconnectClient) -> String { "\(prefix)-\(client.index)" }

    func closeAll() {
        for client in clients { client.close() }
    }
}

/// One client of the mass reconnect: its user, its latest token and its current connection.
/// Lives on the run's one event loop like ``LeanReconnect`` (hence `@unchecked Sendable`: timers
/// scheduled on that loop capture it).
private final class ReconnectClient: @unchecked Sendable {
    enum State {
        case connecting
        case hello
        case registering
        case registered
        case loggingOn
        case loggedOn
        case gone
    }

    let index: Int
    private unowned let run: LeanReconnect
    private var state = State.connecting
    private var channel: (any Channel)?
    private var framing = LeanFraming(allocator: ByteBufferAllocator())
    private var user: UInt32 = 0
    private var token = ""
    private var stormStart: ContinuousClock.Instant?
    private var nextRequestID: UInt32 = 1

    init(index: Int, run: LeanReconnect) {
        self.index = index
        self.run = run
    }

    func stormStarted(at start: ContinuousClock.Instant) {
        stormStart = start
    }

    func connected(_ channel: any Channel) {
        self.channel = channel
        framing = LeanFraming(allocator: channel.allocator)
        state = .hello
        do {
            try channel.pipeline.syncOperations.addHandler(ReconnectChannelHandler(client: self))
        } catch {
            channel.close(promise: nil)
            return
        }
        // What ParleyClient asks for, so that each logon costs the server what a real one does
        // (the presence capability has it load and announce the user's presence).
        framing.appendHello(capabilities: [
            WireProtocol.presenceCapability, WireProtocol.commandsCapability, WireProtocol.filesCapability,
            WireProtocol.historyCapability,
        ])
        framing.flush(on: channel)
    }

    func close() {
        channel?.close(promise: nil)
    }

    /// LOGON with the token and no password (docs/PROTOCOL.md section 9.2.1).
    func logOn() {
        guard state == .loggingOn, let channel else { return }
        var request = Parley_V1_LogonRequest()
        request.userID = user
        request.resumptionToken = token
        send(Frame(type: .logOn, requestID: 0, message: request), on: channel)
    }

    private func send(_ frame: Frame, on channel: any Channel) {
        var frame = frame
        nextRequestID &+= 1
        frame.requestID = nextRequestID
        framing.append(frame)
        framing.flush(on: channel)
    }

    fileprivate func read(_ bytes: ByteBuffer) {
        framing.received(bytes)
        do {
            while let frame = try framing.nextFrame() { handle(frame) }
        } catch {
            run.fail("connection \(index): the server sent a malformed frame")
        }
        if let channel { framing.flush(on: channel) }
    }

    fileprivate func closed() {
        channel = nil
        let before = state
        state = .gone
        guard run.isStorming else {
            run.lostConnection(self)
            return
        }
        // Logged on and counted: a close now is after the measurement.
        guard before != .loggedOn else { return }
        run.connectionFailed(self, "the server closed the connection before the logon's answer")
    }

    private func handle(_ frame: LeanFraming.RawFrame) {
        switch FrameType(rawValue: frame.type) {
        case .ping:
            framing.appendPong(to: frame)
        case FrameType.hello.response:
            helloDone()
        case FrameType.register.response, FrameType.logOn.response:
            guard let response: Parley_V1_LogonResponse = try? frame.frame.decodeMeta() else {
                run.fail("connection \(index): an unreadable logon answer")
                return
            }
            accepted(response)
        case .error:
            let error = ParleyError(errorFrame: frame.frame)
            if state == .loggingOn, frame.requestID != 0 {
                run.refused(self, error)
            } else if !run.isStorming {
                run.fail("connection \(index): \(error)")
            }
        default:
            break  // events this bench did not ask for
        }
    }

    private func helloDone() {
        guard let channel else { return }
        if run.isStorming {
            state = .loggingOn
            logOn()
            return
        }
        var request = Parley_V1_RegisterRequest()
        request.info.userName = run.name(of: self)
        request.password = run.passwordForRegistration
        state = .registering
        send(Frame(type: .register, requestID: 0, message: request), on: channel)
    }

    private func accepted(_ response: Parley_V1_LogonResponse) {
        let presented = token
        token = response.resumptionToken
        switch state {
        case .registering:
            user = response.user.userID
            state = .registered
            guard !token.isEmpty else {
                run.fail("the server issued no resumption token: is its token lifetime 0?")
                return
            }
            run.registeredOne()
        case .loggingOn:
            state = .loggedOn
            let elapsed = stormStart.map { (ContinuousClock.now - $0).nanoseconds } ?? 0
            run.loggedOn(
                self, after: elapsed, rotated: response.user.userID == user && !token.isEmpty && token != presented)
        default:
            break
        }
    }
}

/// Hands one channel's bytes and its end to the client that owns it.
private final class ReconnectChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private unowned let client: ReconnectClient

    init(client: ReconnectClient) {
        self.client = client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        client.read(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        client.closed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
