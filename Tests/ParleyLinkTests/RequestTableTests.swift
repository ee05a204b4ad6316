import NIOCore
import NIOEmbedded
import ParleyCore
import ParleyLink
import ParleyWire
import Synchronization
import Testing

/// The request table on an `EmbeddedChannel`: virtual time, no sockets. The tests are
/// synchronous: an embedded event loop belongs to the thread that created it.
@Suite struct RequestTableTests {
    @Test func idsSkipZeroAndIDsStillInUseAndWrapAround() {
        var ids = RequestIDs(next: UInt32.max - 1)
        var inUse: Set<UInt32> = []
        for _ in 0..<3 { inUse.insert(ids.allocate { inUse.contains($0) }) }
        #expect(inUse == [UInt32.max - 1, UInt32.max, 1])
        // Back at the start, the IDs still held are skipped.
        ids.next = UInt32.max - 1
        inUse.remove(UInt32.max)
        #expect(ids.allocate { inUse.contains($0) } == UInt32.max)
        #expect(ids.allocate { inUse.contains($0) } == 2)
    }

    @Test func answersCompleteTheirRequestsAndIDsAreReused() throws {
        let fixture = try Fixture()
        let first = fixture.send(.peerMessage)
        let second = fixture.send(.peerCommand)
        let written = try fixture.written()
        #expect(written.map(\.requestID) == [1, 2])
        #expect(written.map(\.type) == [.peerMessage, .peerCommand])
        #expect(fixture.table.count == 2)

        #expect(
            fixture.table.answer(Frame(type: FrameType.peerCommand.response, requestID: 2, message: Parley_V1_Empty())))
        #expect(try second.frame().type == FrameType.peerCommand.response)
        let refusal = ParleyError(code: .recipientNotFound, message: "nobody here")
        #expect(fixture.table.answer(.error(refusal, requestID: 1)))
        #expect(first.error()?.code == .recipientNotFound)
        #expect(fixture.table.count == 0)
        #expect(!fixture.table.isSweeping)
        // An answer for a request that no longer waits is ignored.
        #expect(
            !fixture.table.answer(Frame(type: FrameType.peerCommand.response, requestID: 2, message: Parley_V1_Empty()))
        )
        _ = fixture.send(.peerMessage)
        #expect(try fixture.written().map(\.requestID) == [3])
    }

    @Test func requestsTimeOutByTheSweepAndLateAnswersAreIgnored() throws {
        let fixture = try Fixture()
        let short = fixture.send(.peerMessage, timeout: .milliseconds(500))
        let long = fixture.send(.peerMessage, timeout: .seconds(2))
        #expect(fixture.table.isSweeping)
        fixture.loop.advanceTime(by: .milliseconds(400))
        #expect(short.result == nil)
        fixture.loop.advanceTime(by: .milliseconds(200))
        #expect(short.error()?.code == .timedOut)
        #expect(long.result == nil)
        #expect(fixture.table.count == 1)
        fixture.loop.advanceTime(by: .milliseconds(1500))
        #expect(long.error()?.code == .timedOut)
        #expect(fixture.table.count == 0)
        #expect(!fixture.table.isSweeping)
        // The answers arrive after all.
        for frame in try fixture.written() {
            #expect(
                !fixture.table.answer(
                    Frame(type: frame.type.response, requestID: frame.requestID, message: Parley_V1_Empty())))
        }
        #expect(fixture.table.count == 0)
    }

    @Test func closingFailsEveryRequestAndEveryLaterOne() throws {
        let fixture = try Fixture()
        let waiting = (0..<5).map { _ in fixture.send(.peerMessage) }
        let gone = ParleyError(code: .notConnected, message: "gone")
        fixture.table.close(gone)
        #expect(waiting.allSatisfy { $0.error() == gone })
        let later = fixture.send(.peerMessage)
        #expect(later.error() == gone)
        #expect(try fixture.written().count == 5)
        #expect(fixture.table.count == 0)
        #expect(!fixture.table.isSweeping)
        // A second close changes nothing.
        fixture.table.close(ParleyError(code: .shuttingDown, message: "again"))
        #expect(fixture.send(.peerMessage).error() == gone)
    }

    @Test func aFailedWriteFailsItsRequestOnly() throws {
        let fixture = try Fixture(refusingWrites: true)
        let request = fixture.send(.peerMessage)
        #expect(request.error()?.code == .notConnected)
        #expect(request.error()?.message == "write failed")
        #expect(fixture.table.count == 0)
    }

    @Test func aCancelledRequestFailsAndLeavesTheTable() throws {
        let fixture = try Fixture()
        let kept = fixture.send(.peerMessage)
        let dropped = fixture.send(.peerMessage)
        fixture.table.cancel(dropped.future, with: ParleyError(code: .cancelled, message: "stop"))
        #expect(dropped.error()?.code == .cancelled)
        #expect(kept.result == nil)
        #expect(fixture.table.count == 1)
        #expect(
            fixture.table.answer(Frame(type: FrameType.peerMessage.response, requestID: 1, message: Parley_V1_Empty())))
        #expect(try kept.frame().requestID == 1)
        #expect(fixture.table.count == 0)
    }
}

/// A table on an embedded channel that records what it writes.
private struct Fixture {
    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel
    let table: RequestTable

    init(refusingWrites: Bool = false) throws {
        channel = EmbeddedChannel(handler: refusingWrites ? RefuseWrites() : nil, loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        table = RequestTable(eventLoop: loop, sweepInterval: .milliseconds(100))
    }

    func send(_ type: FrameType, timeout: Duration = .seconds(1)) -> Outcome {
        let future = table.send(
            Frame(type: type, requestID: 0, message: Parley_V1_Empty()),
            on: channel,
            timeout: timeout
        ) { _ in ParleyError(code: .notConnected, message: "write failed") }
        return Outcome(future: future)
    }

    /// The frames written so far, in order.
    func written() throws -> [Frame] {
        var frames: [Frame] = []
        while let frame = try channel.readOutbound(as: Frame.self) { frames.append(frame) }
        return frames
    }
}

/// A request's future and what it completed with, if it did.
private final class Outcome: Sendable {
    let future: EventLoopFuture<Frame>
    private let completion = Mutex<Result<Frame, any Error>?>(nil)

    init(future: EventLoopFuture<Frame>) {
        self.future = future
        future.whenComplete { [self] result in completion.withLock { $0 = result } }
    }

    var result: Result<Frame, any Error>? { completion.withLock { $0 } }

    func frame() throws -> Frame {
        guard let result else { throw ParleyError(code: .internalError, message: "still waiting") }
        return try result.get()
    }

    func error() -> ParleyError? {
        guard case .failure(let error) = result else { return nil }
        return error as? ParleyError
    }
}

/// Fails every write, as a socket that broke would.
private final class RefuseWrites: ChannelOutboundHandler {
    typealias OutboundIn = Frame

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        promise?.fail(ChannelError.ioOnClosedChannel)
    }
}
