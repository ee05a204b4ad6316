import Foundation
import NIOCore
import NIOPosix
import ParleyCore
import ParleyLink
import ParleyNode
import ParleyTesting
import ParleyWire
import Synchronization
import Testing

/// Direct links hold a fast peer back by not reading (backpressure) instead of dropping it.
@Suite(.timeLimit(.minutes(2))) struct LinkBackpressureTests {
    /// A peer that writes far more PEER_MESSAGEs than any buffer holds, without waiting for one
    /// answer, keeps its link and gets every message answered (before, the 257th closed it).
    @Test func aPeerThatWritesHundredsOfMessagesBackToBackKeepsItsLink() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        // The tests' 1 s peer timeout: bob's serving task is behind for longer than that on a
        // busy machine, and a link held back that long is still not idle.
        let bob = try makeLANNode("bob", in: directory, lan: FakeLAN())
        let count = 1000
        try await withRunningNode(bob) { bobEvents in
            let identity = try NodeIdentity(dataDirectory: directory.subdirectory("raw"))
            let port = try await bob.listeningPort
            let (channel, handshake) = try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup)
                .connect(host: "127.0.0.1", port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handshake = try channel.pipeline.syncOperations.addParleyNodeLinkHandlers(
                            identity: identity,
                            role: .dialling(expecting: bob.nodeID),
                            configuration: LinkConfiguration(heartbeatInterval: .seconds(1), idleTimeout: .seconds(30))
                        )
                        return (try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel), handshake)
                    }
                }
            _ = try await handshake.authenticatedPeer()
            try await channel.executeThenClose { inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                let hello = try #require(try await frames.next())
                #expect(hello.type == .nodeHello)
                var ours = Parley_V1_NodeHello()
                ours.nodeID = identity.nodeID.description
                ours.userName = "raw"
                try await outbound.write(Frame(type: .nodeHello, requestID: 0, message: ours))
                // Every message at once, in one flush; the answers are read only afterwards.
                let messages = (1...count).map { index in
                    var meta = Parley_V1_PeerMessage()
                    meta.messageID = UInt64(index)
                    meta.kind = .text
                    meta.sentAtMs = Int64(Date().timeIntervalSince1970 * 1000)
                    return Frame(
                        type: .peerMessage, requestID: UInt32(index), message: meta,
                        payload: ByteBuffer(string: "message \(index)"))
                }
                try await outbound.write(contentsOf: messages)
                var answered: [UInt32] = []
                while answered.count < count, let answer = try await frames.next() {
                    #expect(answer.type == FrameType.peerMessage.response, "\(answer.type)")
                    answered.append(answer.requestID)
                }
                // Before backpressure, bob dropped the link once 256 frames waited: no answer came.
                try #require(answered.count == count, "\(answered.count) of \(count) answered; the link closed")
                #expect(answered == (1...count).map { UInt32($0) })
            }
            try await bobEvents.wait("\(count) messages", timeout: .seconds(60)) { _ in
                bobEvents.messages.count >= count
            }
            #expect(bobEvents.messages.map(\.body) == (1...count).map { .text("message \($0)") })
        }
    }

    /// Node ann sends 10,000 messages to node bob from 64 tasks at once while bob's application
    /// reads its events slowly: one link all along, every message once and, per task, in order,
    /// and the process's memory bounded.
    @Test func tenThousandMessagesFromSixtyFourTasksReachASlowReaderOnOneLink() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let ann = try makePatientNode("ann", in: directory, lan: lan)
        let bob = try makePatientNode("bob", in: directory, lan: lan)
        let tasks = 64
        let perTask = 10_000 / tasks + 1
        let total = tasks * perTask
        let memory = ResidentMemory()
        let started = ContinuousClock.now
        try await withRunningNode(ann) { annEvents in
            // Bob's application pauses 20 ms every 100 events.
            let pacing: @Sendable (Int) async -> Void = { count in
                guard count % 100 == 0 else { return }
                memory.sample()
                try? await Task.sleep(for: .milliseconds(20))
            }
            try await withRunningNode(bob, afterEvent: pacing) { bobEvents in
                try await annEvents.wait("bob to show up") { $0.isLinked(to: bob.nodeID) }
                try await bobEvents.wait("ann to show up") { $0.isLinked(to: ann.nodeID) }
                memory.sample()
                try await withThrowingTaskGroup(of: [ParleyNode.SendResult].self) { group in
                    for task in 0..<tasks {
                        group.addTask {
                            var results: [ParleyNode.SendResult] = []
                            for index in 0..<perTask {
                                results.append(try await ann.send(.text("\(task) \(index)"), to: .node(bob.nodeID)))
                            }
                            return results
                        }
                    }
                    for try await results in group {
                        #expect(results.allSatisfy { $0.route == .direct })
                    }
                }
                try await bobEvents.wait("\(total) messages", timeout: .seconds(90)) { _ in
                    bobEvents.messages.count >= total
                }
                // Exactly once, and each task's messages in the order it sent them.
                let texts = bobEvents.messages.compactMap { message -> (task: Int, index: Int)? in
                    guard case .text(let text) = message.body else { return nil }
                    let parts = text.split(separator: " ").compactMap { Int($0) }
                    return parts.count == 2 ? (parts[0], parts[1]) : nil
                }
                #expect(texts.count == total)
                for task in 0..<tasks {
                    #expect(texts.filter { $0.task == task }.map(\.index) == Array(0..<perTask))
                }
                // One link all along: neither side ever saw the other unlinked after it came up.
                #expect(annEvents.all.linkDowns(of: bob.nodeID) == 0)
                #expect(bobEvents.all.linkDowns(of: ann.nodeID) == 0)
            }
        }
        let (baseline, peak) = memory.figures
        let elapsed = ContinuousClock.now - started
        print(
            "flood: \(total) messages from \(tasks) tasks in \(elapsed); resident memory \(baseline / 1024) MiB before, peak \(peak / 1024) MiB"
        )
        // The whole test process is measured: both nodes, this test's records, and whatever other
        // suites run meanwhile (alone: +5 MiB; beside the other node tests: +160 MiB). The lab
        // test (NodeLabFloodTests) measures the receiving node's process on its own.
        #expect(peak - baseline < 512 * 1024, "resident memory grew by \((peak - baseline) / 1024) MiB")
    }
}

/// A LAN node whose links wait 10 s for a silent peer, and whose messages wait as long for their
/// answers (the flood's 10,000 answers must all come in time on a busy machine).
private func makePatientNode(_ name: String, in directory: TemporaryDirectory, lan: FakeLAN) throws -> ParleyNode {
    var configuration = makeNodeConfiguration(dataDirectory: directory.subdirectory(name), name: name)
    configuration.heartbeatInterval = .seconds(1)
    configuration.peerTimeout = .seconds(10)
    return try ParleyNode(
        configuration: configuration, discovery: FakeDiscovery(lan: lan), logger: makeTestLogger(name))
}

/// This process's resident memory (VmRSS, KiB): the first sample and the highest.
private final class ResidentMemory: Sendable {
    private let samples = Mutex<(first: Int?, peak: Int)>((nil, 0))

    func sample() {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kibibytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { return }
        samples.withLock { samples in
            if samples.first == nil { samples.first = kibibytes }
            samples.peak = max(samples.peak, kibibytes)
        }
    }

    var figures: (baseline: Int, peak: Int) {
        sample()
        return samples.withLock { ($0.first ?? 0, $0.peak) }
    }
}

extension [ParleyNode.Event] {
    /// How often `node` went from linked to unlinked.
    fileprivate func linkDowns(of node: ParleyNode.NodeID) -> Int {
        var linked = false
        var downs = 0
        for event in self {
            switch event {
            case .peerUp(let info) where info.nodeID == node, .peerChanged(let info) where info.nodeID == node:
                if linked, !info.linked { downs += 1 }
                linked = info.linked
            case .peerDown(let down) where down == node:
                if linked { downs += 1 }
                linked = false
            default:
                break
            }
        }
        return downs
    }
}
