import NIOCore
import NIOEmbedded
import NIOPosix
import ParleyCore
import ParleyWire
import Testing

@testable import ParleyLink

/// Links on one event loop keep their deadlines in one ``LinkTimers`` heap: each is told at its
/// own deadline, in order, and a closed link leaves the heap at once.
@Suite struct LinkTimersTests {
    @Test func linksSharingOneHeapAreClosedEachAtItsOwnIdleTimeout() throws {
        let loop = EmbeddedEventLoop()
        let timers = LinkTimers(eventLoop: loop)
        // Idle timeouts of 1 to 7 s, in an order that is not the deadlines' order.
        let timeouts = (0..<70).map { ($0 * 3) % 7 + 1 }
        var channels: [EmbeddedChannel] = []
        for seconds in timeouts {
            let channel = try link(on: loop, heartbeat: .zero, idle: .seconds(Int64(seconds)), timers: timers)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            channels.append(channel)
        }
        #expect(timers.count == 70)

        // Ten links close before their deadline: they leave the heap.
        for channel in channels[20..<30] { try channel.close().wait() }
        #expect(timers.count == 60)

        for second in 1...7 {
            loop.advanceTime(by: .seconds(1))
            for (index, channel) in channels.enumerated() where !(20..<30).contains(index) {
                #expect(channel.isActive == (timeouts[index] > second), "link \(index) at \(second) s")
            }
            let open = channels.indices.filter { !(20..<30).contains($0) && timeouts[$0] > second }.count
            #expect(timers.count == open)
        }
        #expect(timers.count == 0)
    }

    @Test func timeoutsAreKeptInWholeMillisecondsRoundedUpAndHugeOnesClamped() throws {
        let loop = EmbeddedEventLoop()
        let timers = LinkTimers(eventLoop: loop)
        // 1.5 ms is kept as 2 ms: the link is still open after 1.9 ms, closed at 2 ms.
        let short = try link(on: loop, heartbeat: .zero, idle: .microseconds(1_500), timers: timers)
        // A timeout beyond what 32 bits of milliseconds hold (49 days) is clamped, not a trap.
        let huge = Duration.seconds(Int64.max / 2)
        let long = try link(on: loop, heartbeat: huge, idle: huge, timers: timers)
        for channel in [short, long] {
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }
        loop.advanceTime(by: .microseconds(1_900))
        #expect(short.isActive)
        loop.advanceTime(by: .microseconds(100))
        #expect(!short.isActive)
        loop.advanceTime(by: .hours(24 * 40))
        #expect(long.isActive)
        #expect(timers.count == 1)
        _ = try long.finish()
    }

    @Test func aHeartbeatMovesItsLinksDeadlineWithoutDisturbingTheOthers() throws {
        let loop = EmbeddedEventLoop()
        let timers = LinkTimers(eventLoop: loop)
        let beating = try link(on: loop, heartbeat: .seconds(1), idle: .seconds(10), timers: timers)
        let quiet = try link(on: loop, heartbeat: .zero, idle: .seconds(3), timers: timers)
        for channel in [beating, quiet] {
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        var pings = 0
        for _ in 1...5 {
            loop.advanceTime(by: .seconds(1))
            while let bytes = try beating.readOutbound(as: ByteBuffer.self) {
                var bytes = bytes
                var decoder = FrameDecoder(maximumFrameSize: 1 << 20)
                while let frame = try decoder.decode(buffer: &bytes) {
                    #expect(frame.type == .ping)
                    pings += 1
                }
            }
        }
        #expect(pings == 5)
        #expect(beating.isActive)
        #expect(!quiet.isActive)
        #expect(timers.count == 1)
    }

    @Test func theLinksOfAMultiThreadedLoopShareItsTimers() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let same = try loop.submit {
            LinkTimers.for(loop) === LinkTimers.for(loop)
        }.wait()
        #expect(same)
        let embedded = EmbeddedEventLoop()
        #expect(LinkTimers.for(embedded) !== LinkTimers.for(embedded))
    }

    /// A channel on `loop` with a link handler whose deadline is kept in `timers` (not connected).
    private func link(
        on loop: EmbeddedEventLoop, heartbeat: Duration, idle: Duration, timers: LinkTimers
    ) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(
            LinkHandler(
                configuration: LinkConfiguration(heartbeatInterval: heartbeat, idleTimeout: idle),
                judgingIdleBy: nil, timers: timers))
        return channel
    }
}
