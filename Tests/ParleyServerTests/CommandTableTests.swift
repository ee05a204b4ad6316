import NIOCore
import NIOPosix
import ParleyCore
import Synchronization
import Testing

@testable import ParleyServer

@Suite("The table of commands waiting for a reply")
struct CommandTableTests {
    /// What each command's completion got, by label, in the order they completed.
    final class Outcomes: Sendable {
        private let state = Mutex<[(String, Result<ByteBuffer, ParleyError>)]>([])
        private let stream: AsyncStream<Void>
        private let continuation: AsyncStream<Void>.Continuation

        init() {
            (stream, continuation) = AsyncStream.makeStream()
        }

        func record(_ label: String, _ result: Result<ByteBuffer, ParleyError>) {
            state.withLock { $0.append((label, result)) }
            continuation.yield()
        }

        var all: [(String, Result<ByteBuffer, ParleyError>)] { state.withLock { $0 } }

        /// Waits until `count` completions arrived (once per test: the stream is iterated once).
        func wait(for count: Int) async {
            var iterator = stream.makeAsyncIterator()
            while all.count < count {
                _ = await iterator.next()
            }
        }
    }

    private func add(
        _ label: String,
        _ table: CommandTable,
        _ outcomes: Outcomes,
        timeout: Duration,
        recipient: ObjectIdentifier?,
        loop: any EventLoop
    ) -> UInt64 {
        table.add(name: label, timeout: timeout, recipient: recipient, on: loop) { result in
            outcomes.record(label, result)
        }
    }

    @Test("each command completes once: by its reply, its deadline, its recipient leaving or shutdown")
    func completions() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let table = CommandTable()
        let outcomes = Outcomes()
        final class Session {}
        let (one, two) = (Session(), Session())
        let replied = add(
            "replied", table, outcomes, timeout: .seconds(30), recipient: ObjectIdentifier(one), loop: loop)
        let left = add("left", table, outcomes, timeout: .seconds(30), recipient: ObjectIdentifier(two), loop: loop)
        let slow = add(
            "slow", table, outcomes, timeout: .milliseconds(200), recipient: ObjectIdentifier(one), loop: loop)
        let fast = add("fast", table, outcomes, timeout: .milliseconds(50), recipient: nil, loop: loop)
        let stopped = add("stopped", table, outcomes, timeout: .seconds(30), recipient: nil, loop: loop)
        #expect(Set([replied, left, slow, fast, stopped]).count == 5)

        // Only the recipient the command was pushed to may reply.
        #expect(!table.complete(replied, from: ObjectIdentifier(two), with: .success(ByteBuffer(bytes: [1]))))
        #expect(table.complete(replied, from: ObjectIdentifier(one), with: .success(ByteBuffer(bytes: [1]))))
        #expect(!table.complete(replied, from: ObjectIdentifier(one), with: .success(ByteBuffer(bytes: [2]))))
        table.recipientLeft(ObjectIdentifier(two), user: 1001)
        // The earlier deadline is swept first, though it was added after the later one.
        await outcomes.wait(for: 4)
        #expect(outcomes.all.map(\.0) == ["replied", "left", "fast", "slow"])
        #expect(!table.complete(slow, from: ObjectIdentifier(one), with: .success(ByteBuffer())))
        table.failAll(ParleyError(code: .shuttingDown, message: "stop"))
        // failAll completes at once, before it returns.
        #expect(outcomes.all.last?.0 == "stopped")
        #expect(table.count == 0)

        let codes = outcomes.all.map { entry -> ParleyError.Code? in
            if case .failure(let error) = entry.1 { return error.code }
            return nil
        }
        #expect(codes == [nil, .recipientOffline, .commandTimedOut, .commandTimedOut, .shuttingDown])
    }
}
