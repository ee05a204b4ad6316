import Foundation
import NIOCore
import NIOPosix
import ParleyCore
import ParleyWire

/// The message load of `parley bench --lean`: raw plaintext connections on one event loop
/// thread, frames encoded and decoded by hand (``HotMeta``), one write and flush per connection
/// per read burst, acknowledgements batched per read burst. It does what the ParleyClient-based
/// bench does (client i registers a fresh user and sends its share to client (i+1) % N, with at
/// most `window` answers outstanding; the body carries the send time) at a fraction of the CPU,
/// so the server, not the generator, limits the figures.
///
/// Everything runs on the one event loop: no locks, no tasks per message. (Hence
/// `@unchecked Sendable`: the object is handed to that loop and only used there.)
final class LeanLoad: @unchecked Sendable {
    struct Plan: Sendable {
        var host: String
        var port: Int
        var clients: Int
        var messages: Int
        var size: Int
        var window: Int
        /// Offered messages per second over all clients; nil sends as fast as the window allows.
        var rate: Double?
        /// In a paced run: acknowledgements wait for the pacer's next tick and go out with the
        /// sends, instead of after every read.
        var acksWithSends = false
        var deadline: ContinuousClock.Instant
        var serverPID: Int32?

        func share(of index: Int) -> Int {
            messages / clients + (index < messages % clients ? 1 : 0)
        }
    }

    /// Runs the plan and reports like the ParleyClient-based bench, plus what only this one checks.
    static func run(_ plan: Plan) async throws -> BenchCommand.MessageReport {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let done = loop.makePromise(of: BenchCommand.MessageReport.self)
        let load = try await loop.submit { LeanLoad(plan: plan, loop: loop, done: done) }.get()
        let result: Result<BenchCommand.MessageReport, any Error>
        do {
            try await load.connect()
            result = .success(try await done.futureResult.get())
        } catch {
            result = .failure(error)
        }
        try? await loop.submit { load.closeAll() }.get()
        try? await group.shutdownGracefully()
        return try result.get()
    }

    private let plan: Plan
    private let loop: any EventLoop
    private let done: EventLoopPromise<BenchCommand.MessageReport>
    private var connections: [LeanConnection] = []
    private let password = "lean-\(UInt64.random(in: 0...UInt64.max))"
    private let prefix = "lean-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)

    // Registration: a bounded number of REGISTERs in flight (the server hashes ~40-65 passwords a second).
    private var nextToRegister = 0
    private var helloDoneCount = 0
    private var registered = 0
    private static let registrationsInFlight = 32

    // The measurement.
    private var start: ContinuousClock.Instant?
    private var cpu: CPUWindow?
    @exclusivity(unchecked) private var delivered = 0
    @exclusivity(unchecked) private var failed = 0
    @exclusivity(unchecked) private var outOfOrder = 0
    @exclusivity(unchecked) private var firstFailure: String?
    @exclusivity(unchecked) private var lastDelivery: ContinuousClock.Instant?
    @exclusivity(unchecked) private var issued = 0
    @exclusivity(unchecked) private var pacer: RepeatedTask?
    @exclusivity(unchecked) private var nextPaced = 0
    @exclusivity(unchecked) private var finished = false

    private init(plan: Plan, loop: any EventLoop, done: EventLoopPromise<BenchCommand.MessageReport>) {
        self.plan = plan
        self.loop = loop
        self.done = done
    }

    private func connect() async throws {
        let bootstrap = ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
        for index in 0..<plan.clients {
            let channel = try await bootstrap.connect(host: plan.host, port: plan.port).get()
            try await loop.submit {
                let connection = LeanConnection(index: index, load: self, channel: channel)
                self.connections.append(connection)
                try channel.pipeline.syncOperations.addHandler(connection)
                connection.sendHello()
            }.get()
        }
        loop.execute { self.registerMore() }
        loop.scheduleTask(in: .nanoseconds(max(0, (plan.deadline - .now).nanoseconds))) {
            self.finish(timedOut: true)
        }
    }

    /// A connection finished its handshake: it may register when its turn comes.
    fileprivate func helloDone() {
        helloDoneCount += 1
        registerMore()
    }

    private func registerMore() {
        while nextToRegister < helloDoneCount,
            nextToRegister - registered < Self.registrationsInFlight
        {
            let connection = connections[nextToRegister]
            guard connection.isReadyToRegister else { break }
            connection.register(name: "\(prefix)-\(nextToRegister)", password: password)
            nextToRegister += 1
        }
    }

    fileprivate func registeredOne() {
        registered += 1
        // Every planned connection, not the ones opened so far: against a fast server the
        // first ones register before the last are connected (the load then started twice,
        // the first time among 15 of 100 clients: one sender's first window went to the wrong
        // recipient and counted as out of order).
        if registered == plan.clients {
            startLoad()
        } else {
            registerMore()
        }
    }

    fileprivate func fail(_ message: String) {
        guard !finished else { return }
        finished = true
        done.fail(CommandFailure(message: message, exitCode: ExitStatus.failure))
    }

    // MARK: Load

    private func startLoad() {
        let count = connections.count
        for (index, connection) in connections.enumerated() {
            connection.prepare(
                target: connections[(index + 1) % count].user,
                quota: plan.share(of: index),
                window: plan.window,
                expectedSender: connections[(index + count - 1) % count].user,
                size: plan.size
            )
        }
        cpu = CPUWindow(serverPID: plan.serverPID)
        start = .now
        if let rate = plan.rate {
            let started = NIODeadline.now()
            pacer = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { [self] _ in
                let elapsed = Double((NIODeadline.now() - started).nanoseconds) / 1e9
                pace(due: min(Int(rate * elapsed), plan.messages))
            }
        } else {
            for connection in connections {
                connection.sendWhileRoom()
                connection.flush()
            }
        }
    }

    /// Sends round robin until `due` messages were issued in all (or no sender has room).
    ///
    /// Each connection writes what it took as soon as its turn comes, and its messages carry
    /// the time of that write: the latency starts when the client hands the message to the
    /// kernel, as it would for 100 separate clients. (One stamp for the whole tick counted this
    /// thread's own writes to the other connections: about 50 writes, 0.5 ms, per tick at
    /// 50,000 msg/s.)
    private func pace(due: Int) {
        if deferredAcks { for connection in connections { connection.appendAcks() } }
        let first = nextPaced
        var idle = 0
        while issued < due, idle < connections.count {
            let connection = connections[nextPaced]
            nextPaced = (nextPaced + 1) % connections.count
            if connection.takeOne() {
                idle = 0
            } else {
                idle += 1
            }
        }
        for offset in 0..<connections.count {
            let connection = connections[(first + offset) % connections.count]
            guard connection.hasTaken else { continue }
            connection.appendTaken(stamp: elapsedNanoseconds)
            connection.flush()
        }
        // Then the acknowledgements of those that sent nothing this tick (`--ack-with-sends`).
        for connection in connections { connection.flush() }
    }

    fileprivate var isPaced: Bool { plan.rate != nil }

    /// Whether acknowledgements wait for the pacer (see ``Plan/acksWithSends``).
    fileprivate var deferredAcks: Bool { plan.rate != nil && plan.acksWithSends && start != nil }

    fileprivate func issuedOne() { issued += 1 }

    fileprivate var elapsedNanoseconds: Int64 { elapsedNanoseconds(at: .now) }

    fileprivate func elapsedNanoseconds(at instant: ContinuousClock.Instant) -> Int64 {
        start.map { (instant - $0).nanoseconds } ?? 0
    }

    fileprivate func sendFailed(_ reason: String) {
        failed += 1
        if firstFailure == nil { firstFailure = reason }
        checkFinished()
    }

    fileprivate func deliveredOne(inOrder: Bool, at instant: ContinuousClock.Instant) {
        delivered += 1
        if !inOrder { outOfOrder += 1 }
        lastDelivery = instant
        checkFinished()
    }

    private func checkFinished() {
        if delivered + failed >= plan.messages { finish(timedOut: false) }
    }

    private var latency: LatencySummary {
        var merged = LatencySummary()
        for connection in connections { merged.merge(connection.latency) }
        return merged
    }

    private func finish(timedOut: Bool) {
        guard !finished else { return }
        finished = true
        pacer?.cancel()
        guard let start else {
            done.fail(
                CommandFailure(
                    message: "registering \(connections.count) users did not finish within the timeout",
                    exitCode: ExitStatus.incomplete
                )
            )
            return
        }
        let end = lastDelivery ?? .now
        let seconds = Double((end - start).nanoseconds) / 1e9
        let latency = self.latency
        var report = BenchCommand.MessageReport(
            clients: connections.count,
            messages: plan.messages,
            size: plan.size,
            delivered: delivered,
            failed: failed,
            seconds: seconds,
            deliveredPerSecond: seconds > 0 ? Double(delivered) / seconds : 0,
            p50Ms: latency.percentile(0.5),
            p99Ms: latency.percentile(0.99),
            p999Ms: latency.percentile(0.999),
            firstFailure: firstFailure ?? (timedOut ? "the run timed out" : nil)
        )
        report.outOfOrder = outOfOrder
        report.offeredPerSecond = plan.rate
        cpu?.finish(into: &report)
        report.serverPeakRSSMiB = plan.serverPID.flatMap(CPUUsage.peakResidentBytes(ofProcess:)).map {
            Double($0) / 1_048_576
        }
        done.succeed(report)
    }

    func closeAll() {
        pacer?.cancel()
        for connection in connections { connection.close() }
    }
}

/// One lean connection: its handshake, its sends and its receives.
private final class LeanConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State {
        case hello
        case guest
        case registering
        case loggedOn
    }

    let index: Int
    /// The load outlives its connections (it closes them before it goes): no strong load per access.
    private unowned(unsafe) let load: LeanLoad
    private let channel: any Channel
    @exclusivity(unchecked) private var state = State.hello
    @exclusivity(unchecked) private var framing: LeanFraming
    @exclusivity(unchecked) private(set) var user: UInt32 = 0

    // Sending.
    @exclusivity(unchecked) private var target: UInt32 = 0
    @exclusivity(unchecked) private var quota = 0
    @exclusivity(unchecked) private var sent = 0
    @exclusivity(unchecked) private var inFlight = 0
    /// Messages taken from the quota and not yet appended (``takeOne()``).
    @exclusivity(unchecked) private var taken = 0
    @exclusivity(unchecked) private var window = 1
    @exclusivity(unchecked) private var size = 0

    // Receiving.
    @exclusivity(unchecked) private var expectedSender: UInt32 = 0
    @exclusivity(unchecked) private var lastMessageID: UInt64 = 0
    @exclusivity(unchecked) private var acks: [(sender: UInt32, messageID: UInt64)] = []
    @exclusivity(unchecked) var latency = LatencySummary()

    init(index: Int, load: LeanLoad, channel: any Channel) {
        self.index = index
        self.load = load
        self.channel = channel
        self.framing = LeanFraming(allocator: channel.allocator)
    }

    var isReadyToRegister: Bool { state == .guest }

    func close() {
        channel.close(promise: nil)
    }

    // MARK: Handshake

    func sendHello() {
        framing.appendHello()
        flush()
    }

    func register(name: String, password: String) {
        var request = Parley_V1_RegisterRequest()
        request.info.userName = name
        request.password = password
        state = .registering
        framing.append(Frame(type: .register, requestID: 2, message: request))
        flush()
    }

    func prepare(target: UInt32, quota: Int, window: Int, expectedSender: UInt32, size: Int) {
        self.target = target
        self.quota = quota
        self.window = window
        self.expectedSender = expectedSender
        self.size = size
        acks.reserveCapacity(64)
    }

    // MARK: Sending

    /// Sends until the window is full or the quota is used up.
    func sendWhileRoom() {
        while takeOne() {}
        // One clock read for the burst (written together at the next flush).
        appendTaken(stamp: load.elapsedNanoseconds)
    }

    /// Takes one message of the quota if the window allows; ``appendTaken(stamp:)`` writes it.
    func takeOne() -> Bool {
        guard sent < quota, inFlight < window else { return false }
        sent += 1
        inFlight += 1
        taken += 1
        load.issuedOne()
        return true
    }

    var hasTaken: Bool { taken > 0 }

    /// Appends the messages taken since the last call; `stamp` is the send time their bodies
    /// carry (nanoseconds since the load started).
    func appendTaken(stamp: Int64) {
        guard taken > 0 else { return }
        for messageID in (sent - taken + 1)...sent { append(messageID: messageID, stamp: stamp) }
        taken = 0
    }

    private func append(messageID: Int, stamp: Int64) {
        let meta = HotMeta.SendMessage(
            messageID: UInt64(messageID),
            recipients: [UserID(rawValue: target)],
            kind: 0,
            sentAtMs: 0,
            wantReceipt: false
        )
        framing.appendFrame(type: FrameType.sendMessage.rawValue, requestID: UInt32(truncatingIfNeeded: messageID)) {
            buffer in
            meta.write(to: &buffer)
        } payload: { buffer in
            let start = buffer.writerIndex
            buffer.writeString(String(stamp))
            buffer.writeInteger(UInt8(ascii: " "))
            let padding = max(0, size - (buffer.writerIndex - start))
            buffer.writeRepeatingByte(UInt8(ascii: "x"), count: padding)
        }
    }

    func flush() {
        framing.flush(on: channel)
    }

    // MARK: Receiving

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        framing.received(unwrapInboundIn(data))
        // One clock read for what arrived together, not one per message.
        let now = ContinuousClock.now
        do {
            while let frame = try framing.nextFrame() { handle(frame, at: now) }
        } catch {
            load.fail("connection \(index): the server sent a malformed frame")
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !load.deferredAcks { appendAcks() }
        flush()
    }

    /// Appends one ACK_MESSAGES for what was received since the last one.
    func appendAcks() {
        guard !acks.isEmpty else { return }
        framing.appendFrame(type: FrameType.ackMessages.rawValue, requestID: 0) { [acks] buffer in
            HotMeta.writeAck(acks, to: &buffer)
        }
        acks.removeAll(keepingCapacity: true)
    }

    func channelInactive(context: ChannelHandlerContext) {
        load.fail("the server closed connection \(index)")
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        load.fail("connection \(index): \(error)")
        context.close(promise: nil)
    }

    private func handle(_ frame: LeanFraming.RawFrame, at now: ContinuousClock.Instant) {
        switch FrameType(rawValue: frame.type) {
        case .message:
            received(frame, at: now)
        case FrameType.sendMessage.response:
            inFlight -= 1
            // A paced run sends from its timer; this only freed room in the window.
            if !load.isPaced { sendWhileRoom() }
        case .error:
            let error = ParleyError(errorFrame: Frame(type: .error, requestID: frame.requestID, meta: frame.meta))
            if state == .loggedOn, frame.requestID != 0 {
                inFlight -= 1
                load.sendFailed("\(error)")
                if !load.isPaced { sendWhileRoom() }
            } else {
                load.fail("connection \(index): \(error)")
            }
        case .ping:
            framing.appendPong(to: frame)
        case FrameType.hello.response:
            state = .guest
            load.helloDone()
        case FrameType.register.response:
            let wire = Frame(type: .register, requestID: frame.requestID, meta: frame.meta)
            guard let response: Parley_V1_LogonResponse = try? wire.decodeMeta() else {
                load.fail("connection \(index): an unreadable REGISTER answer")
                return
            }
            user = response.user.userID
            state = .loggedOn
            load.registeredOne()
        default:
            break  // events this bench did not ask for
        }
    }

    private func received(_ frame: LeanFraming.RawFrame, at instant: ContinuousClock.Instant) {
        guard let event = HotMeta.MessageEvent(meta: frame.meta) else {
            load.fail("connection \(index): an unreadable MESSAGE event")
            return
        }
        acks.append((event.sender, event.messageID))
        let now = load.elapsedNanoseconds(at: instant)
        var sentAt: Int64 = 0
        frame.payload.withUnsafeReadableBytes { bytes in
            for byte in bytes {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { break }
                sentAt = sentAt &* 10 &+ Int64(byte - UInt8(ascii: "0"))
            }
        }
        latency.record(nanoseconds: now - sentAt)
        let inOrder = event.sender == expectedSender && event.messageID > lastMessageID
        lastMessageID = max(lastMessageID, event.messageID)
        load.deliveredOne(inOrder: inOrder, at: instant)
    }
}
