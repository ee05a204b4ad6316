import Foundation
import ParleyCore
import ParleyDiscovery
import ParleyNode
import ParleyTesting
import Synchronization
import Testing

/// Files between two nodes over a direct link, with no server at all (docs/PROTOCOL.md 26.9).
/// Serialized: each test moves tens of MiB at full speed, which would otherwise starve the other
/// suites' 1 s peer timeouts on a 2-core machine.
@Suite(.serialized, .timeLimit(.minutes(1))) struct DirectFileTests {
    @Test func aFileGoesDirectlyWithProgressOnBothSides() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let ann = try makeLANNode("ann", in: directory, lan: lan)
        let bob = try makeLANNode("bob", in: directory, lan: lan)
        let bytes = try writeFile(count: 3_000_017, at: directory.subdirectory("plan.bin"))
        let inbox = try makeInbox(directory)
        let sent = ProgressLog()
        let received = ProgressLog()
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(bob) { bobEvents in
                try await annEvents.wait("bob") { $0.hasPeerUp(bob.nodeID) }
                let sending = Task {
                    try await ann.sendFile(
                        at: directory.subdirectory("plan.bin"), to: .node(bob.nodeID), progress: sent.append)
                }
                let offer = try await bobEvents.offer()
                #expect(offer.name == "plan.bin" && offer.size == UInt64(bytes.count))
                // Both sides list the transfer while the offer waits for bob's decision.
                let waiting = ParleyNode.DirectTransfer(
                    id: offer.id, direction: .receiving, peer: .user(UserID(0)), name: "plan.bin",
                    size: UInt64(bytes.count), bytesDone: 0, isAccepted: false)
                #expect(bob.activeDirectTransfers() == [waiting])
                var outgoing = waiting
                outgoing.direction = .sending
                outgoing.peer = .node(bob.nodeID)
                #expect(ann.activeDirectTransfers() == [outgoing])
                let saved = try await bob.receiveFile(offer, into: inbox, progress: received.append)
                let result = try await sending.value
                #expect(ann.activeDirectTransfers().isEmpty && bob.activeDirectTransfers().isEmpty)
                #expect(result.route == .direct)
                #expect(result.id == offer.id)
                #expect(try Data(contentsOf: URL(fileURLWithPath: saved)) == bytes)
                #expect(saved == inbox + "/plan.bin")
                #expect(try FileManager.default.contentsOfDirectory(atPath: inbox) == ["plan.bin"])
                for log in [sent, received] {
                    let last = try #require(log.all.last)
                    #expect(last.bytesDone == UInt64(bytes.count) && last.totalBytes == UInt64(bytes.count))
                    #expect(log.all.count > 3, "one report per chunk or so")
                    #expect(log.all.map(\.bytesDone) == log.all.map(\.bytesDone).sorted())
                }
                // The receiver had no partial file (the sender may resume within the run when a
                // chunk answer is slower than the 1 s peer timeout on a busy machine).
                #expect(received.all.allSatisfy { $0.resumedFrom == 0 })
                try await annEvents.wait("the completed status") { $0.hasStatus(offer.id, .completed) }
            }
        }
    }

    @Test func aDeclinedFileIsNotSentAndTheSenderIsTold() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let ann = try makeLANNode("ann", in: directory, lan: lan)
        let bob = try makeLANNode("bob", in: directory, lan: lan)
        _ = try writeFile(count: 100_000, at: directory.subdirectory("spam.bin"))
        let inbox = try makeInbox(directory)
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(bob) { bobEvents in
                try await annEvents.wait("bob") { $0.hasPeerUp(bob.nodeID) }
                let sending = Task {
                    try await ann.sendFile(at: directory.subdirectory("spam.bin"), to: .node(bob.nodeID))
                }
                let offer = try await bobEvents.offer()
                try await bob.declineFile(offer, reason: "no thanks")
                let error = try await #require(throws: ParleyError.self) { try await sending.value }
                #expect(error.code == .transferRefused)
                #expect(error.message.contains("no thanks"))
                try await annEvents.wait("the declined status") { $0.hasStatus(offer.id, .declined) }
                #expect(try FileManager.default.contentsOfDirectory(atPath: inbox).isEmpty)
                // The offer is gone: accepting it now fails clearly.
                let late = try await #require(throws: ParleyError.self) {
                    try await bob.receiveFile(offer, into: inbox)
                }
                #expect(late.code == .notConnected || late.code == .transferNotFound)
            }
        }
    }

    @Test func eitherSideCancels() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let ann = try makeLANNode("ann", in: directory, lan: lan)
        let bob = try makeLANNode("bob", in: directory, lan: lan)
        let source = directory.subdirectory("big.bin")
        let size = 32 << 20
        _ = try writeFile(count: size, at: source)
        let inbox = try makeInbox(directory)
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(bob) { bobEvents in
                try await annEvents.wait("bob") { $0.hasPeerUp(bob.nodeID) }

                // The sender gives up while the offer waits for the receiver's decision.
                let first = TransferID(1)
                let sending = Task { try await ann.sendFile(at: source, to: .node(bob.nodeID), id: first) }
                _ = try await bobEvents.offer(first)
                try await ann.cancelTransfer(first, reason: "changed my mind")
                let senderSide = try await #require(throws: ParleyError.self) { try await sending.value }
                #expect(senderSide.code == .cancelled)
                try await bobEvents.wait("the cancelled status") { $0.hasStatus(first, .cancelled) }

                // The receiver gives up midway: its partial file goes, the sender stops.
                let second = TransferID(2)
                let again = Task { try await ann.sendFile(at: source, to: .node(bob.nodeID), id: second) }
                let offer = try await bobEvents.offer(second)
                let received = ProgressLog()
                let receiving = Task { try await bob.receiveFile(offer, into: inbox, progress: received.append) }
                try await received.wait { $0.bytesDone >= 1 << 20 }
                try await bob.cancelFile(offer, reason: "too big")
                let receiverSide = try await #require(throws: ParleyError.self) { try await receiving.value }
                #expect(receiverSide.code == .cancelled)
                let stopped = try await #require(throws: ParleyError.self) { try await again.value }
                #expect(stopped.code == .cancelled)
                #expect(stopped.message.contains("too big"))
                #expect((received.all.last?.bytesDone ?? 0) < UInt64(size))
                try await annEvents.wait("the cancelled status") { $0.hasStatus(second, .cancelled) }
                #expect(try FileManager.default.contentsOfDirectory(atPath: inbox).isEmpty)
            }
        }
    }

    /// The receiver's partial file does not hold the sender's bytes (damaged on disk): the
    /// transfer resumes after it, the SHA-256 at the end does not match, and nothing is
    /// presented as received.
    @Test func aHashMismatchIsAnErrorAndTheFileIsNotSaved() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let ann = try makeLANNode("ann", in: directory, lan: lan)
        let bob = try makeLANNode("bob", in: directory, lan: lan)
        let source = directory.subdirectory("plan.bin")
        _ = try writeFile(count: 500_000, at: source)
        let inbox = try makeInbox(directory)
        // A node without a user sends as user 0 (section 26.5's partial name: .NAME.SENDER-ID.parley-part).
        let partial = inbox + "/.plan.bin.0-77.parley-part"
        try Data(repeating: 0xAA, count: 200_000).write(to: URL(fileURLWithPath: partial))
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(bob) { bobEvents in
                try await annEvents.wait("bob") { $0.hasPeerUp(bob.nodeID) }
                let sending = Task { try await ann.sendFile(at: source, to: .node(bob.nodeID), id: TransferID(77)) }
                let offer = try await bobEvents.offer()
                let received = ProgressLog()
                let error = try await #require(throws: ParleyError.self) {
                    try await bob.receiveFile(offer, into: inbox, progress: received.append)
                }
                #expect(error.code == .transferHashMismatch)
                #expect(received.all.first?.resumedFrom == 200_000)
                let senderSide = try await #require(throws: ParleyError.self) { try await sending.value }
                #expect(senderSide.code == .transferHashMismatch)
                #expect(try FileManager.default.contentsOfDirectory(atPath: inbox).isEmpty)
            }
        }
    }

    /// The link is cut in the middle of a transfer: the sender dials again and resumes from the
    /// receiver's offset; the file arrives whole, and far fewer bytes than the file crossed after the cut.
    @Test func aBrokenLinkResumesFromTheReceiversOffset() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let source = directory.subdirectory("film.bin")
        let size = 24 << 20
        let bytes = try writeFile(count: size, at: source)
        let inbox = try makeInbox(directory)
        let sent = ProgressLog()
        let cutAt = CutMark()
        try await withProxiedNodes(in: directory) { ann, annEvents, bob, bobEvents, proxy in
            do {
                let sending = Task {
                    try await ann.sendFile(
                        at: source, to: .node(bob.nodeID),
                        progress: cutAt.cutting(proxy, after: size / 3, logging: sent))
                }
                let offer = try await bobEvents.offer()
                let received = ProgressLog()
                let saved = try await bob.receiveFile(offer, into: inbox, progress: received.append)
                let result = try await sending.value
                #expect(result.route == .direct)
                #expect(try Data(contentsOf: URL(fileURLWithPath: saved)) == bytes)
                // The last run started after the cut, at the receiver's offset (an earlier resume
                // may come from a chunk answer slower than the 1 s peer timeout on a busy machine).
                let resumed = try #require(sent.all.last)
                #expect(resumed.resumedFrom >= UInt64(size / 3))
                let afterCut = proxy.bytesForwarded - (cutAt.offset.withLock { $0 } ?? 0)
                print(
                    "resume: cut at \(cutAt.offset.withLock { $0 } ?? 0) bytes, resumed from \(resumed.resumedFrom), \(afterCut) bytes after the cut for a \(size)-byte file"
                )
                #expect(afterCut < size - size / 3 + (1 << 20), "the resumed run did not start over")
                #expect(afterCut < size)
            }
        }
    }

    /// A stream of unknown length goes directly: the offer says so (size 0), the sender's progress
    /// has no total until the end, and a link cut in the middle resumes from the receiver's
    /// offset with the chunks the sender kept, not from the start.
    @Test func aStreamGoesDirectlyAndResumesAfterABrokenLink() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let size = 12 << 20
        let bytes = try writeFile(count: size, at: directory.subdirectory("capture.bin"))
        let inbox = try makeInbox(directory)
        let sent = ProgressLog()
        let cutAt = CutMark()
        try await withProxiedNodes(in: directory) { ann, annEvents, bob, bobEvents, proxy in
            do {
                let sending = Task {
                    try await ann.sendStream(
                        Blocks(data: bytes, size: 100_003), named: "capture.bin", to: .node(bob.nodeID),
                        progress: cutAt.cutting(proxy, after: size / 3, logging: sent))
                }
                let offer = try await bobEvents.offer()
                #expect(offer.isStream && offer.size == 0 && offer.name == "capture.bin")
                let received = ProgressLog()
                let saved = try await bob.receiveFile(offer, into: inbox, progress: received.append)
                let result = try await sending.value
                #expect(result.route == .direct && result.id == offer.id)
                #expect(try Data(contentsOf: URL(fileURLWithPath: saved)) == bytes)
                let reports = sent.all
                #expect(reports.dropLast().allSatisfy { $0.totalBytes == nil }, "a stream's total is unknown")
                #expect(reports.last?.totalBytes == UInt64(size) && reports.last?.bytesDone == UInt64(size))
                #expect(received.all.last?.bytesDone == UInt64(size))
                let resumed = try #require(reports.last)
                #expect(resumed.resumedFrom >= UInt64(size / 3), "the last run began at the receiver's offset")
                let afterCut = proxy.bytesForwarded - (cutAt.offset.withLock { $0 } ?? 0)
                #expect(afterCut < size - size / 3 + (1 << 20), "the resumed run did not start over")
                try await annEvents.wait("the completed status") { $0.hasStatus(offer.id, .completed) }
            }
        }
    }

    /// The receiving node stops in the middle of a transfer (its `receiveFile` fails, the partial
    /// file stays) and starts again on the same data directory: the sender, still trying, resumes
    /// from the partial file's length once the new run accepts the offer into the same folder.
    @Test func theReceiverRestartsAndTheTransferResumesFromItsPartialFile() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let ann = try makeLANNode("ann", in: directory, lan: lan)
        let source = directory.subdirectory("big.bin")
        let size = 48 << 20
        let bytes = try writeFile(count: size, at: source)
        let inbox = try makeInbox(directory)
        try await withRunningNode(ann) { annEvents in
            let firstBob = try makeLANNode("bob", in: directory, lan: lan)
            let bobID = firstBob.nodeID
            let (sending, receiving) = try await withRunningNode(firstBob) { bobEvents in
                try await annEvents.wait("bob") { $0.hasPeerUp(bobID) }
                let sending = Task { try await ann.sendFile(at: source, to: .node(bobID)) }
                let offer = try await bobEvents.offer()
                let received = ProgressLog()
                let receiving = Task { try await firstBob.receiveFile(offer, into: inbox, progress: received.append) }
                try await received.wait { $0.bytesDone >= 4 << 20 }
                return (sending, receiving)
            }
            let stopped = try await #require(throws: ParleyError.self) { try await receiving.value }
            #expect(stopped.code == .notConnected)
            let partial = try #require(try FileManager.default.contentsOfDirectory(atPath: inbox).first)
            #expect(partial.hasSuffix(".parley-part"))
            let kept = try #require(
                try FileManager.default.attributesOfItem(atPath: inbox + "/" + partial)[.size] as? Int)
            #expect(kept >= 4 << 20 && kept < size)

            let secondBob = try makeLANNode("bob", in: directory, lan: lan)
            #expect(secondBob.nodeID == bobID)
            try await withRunningNode(secondBob) { bobEvents in
                let offer = try await bobEvents.offer()
                let received = ProgressLog()
                let saved = try await secondBob.receiveFile(offer, into: inbox, progress: received.append)
                #expect(received.all.first?.resumedFrom == UInt64(kept))
                let result = try await sending.value
                #expect(result.route == .direct)
                #expect(try Data(contentsOf: URL(fileURLWithPath: saved)) == bytes)
                #expect(try FileManager.default.contentsOfDirectory(atPath: inbox) == ["big.bin"])
            }
        }
    }

    /// A user's node is on the LAN but takes no connection: the file goes through the server at
    /// once, as a message would, instead of waiting out the resume window of a broken link.
    @Test func aUsersFileTakesTheServerAtOnceWhenNoLinkOpens() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let proxy = try await FreezingProxy()
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, server in
            let users = try await registerUsers(["ann", "bob"], on: server)
            let ann = try makeServerNode("ann", users[0], directory: directory, server: server, lan: lan)
            let source = directory.subdirectory("plan.bin")
            _ = try writeFile(count: 300_000, at: source)
            try await withRunningNode(ann) { annEvents in
                try await annEvents.waitForLogon()
                // A node claiming bob on the LAN at a port where nothing listens any more.
                let deadPort = proxy.port
                try await proxy.freeze()
                let deadNode = ParleyNode.NodeID(String(repeating: "b", count: 51) + "a")!
                let announcer = FakeDiscovery(lan: lan, lingers: true, advertisedPort: UInt16(deadPort))
                try await announcer.advertise(
                    ServiceRecord(
                        instanceName: "bob", port: 1, nodeID: deadNode, userID: users[1].rawValue, userName: "bob"))
                try await annEvents.wait("bob's node on the LAN") { events in
                    events.contains {
                        if case .peerUp(let info) = $0 { info.nodeID == deadNode } else { false }
                    }
                }
                let started = ContinuousClock.now
                let result = try await ann.sendFile(at: source, to: .user(users[1]))
                let took = started.duration(to: .now)
                #expect(result.route == .server)
                #expect(took < .seconds(10), "the fallback took \(took)")
                #expect(try await ann.transfers().map(\.offer.id) == [result.id])
            }
        }
    }

    // MARK: Helpers

    /// Runs nodes ann and bob where ann reaches bob only through a proxy (bob sees nobody), so
    /// that `proxy.cut()` breaks their link; `body` gets each node with its events, and the proxy.
    private func withProxiedNodes(
        in directory: TemporaryDirectory,
        _ body: (ParleyNode, EventRecorder, ParleyNode, EventRecorder, FreezingProxy) async throws -> Void
    ) async throws {
        let lan = FakeLAN()
        let proxy = try await FreezingProxy()
        let ann = try makeLANNode("ann", in: directory, lan: lan)
        let bob = try makeLANNode("bob", in: directory, lan: FakeLAN())
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(bob) { bobEvents in
                proxy.forward(to: try await bob.listeningPort)
                let announcer = FakeDiscovery(lan: lan, lingers: true, advertisedPort: UInt16(proxy.port))
                try await announcer.advertise(
                    ServiceRecord(instanceName: "bob", port: 1, nodeID: bob.nodeID))
                try await annEvents.wait("bob on the LAN") { $0.contains { $0.isPeer(bob.nodeID) } }
                try await body(ann, annEvents, bob, bobEvents, proxy)
            }
        }
    }

    private func writeFile(count: Int, at path: String) throws -> Data {
        var generator = SystemRandomNumberGenerator()
        var words = [UInt64](repeating: 0, count: (count + 7) / 8)
        for index in words.indices { words[index] = generator.next() }
        let data = words.withUnsafeBytes { Data($0.prefix(count)) }
        try data.write(to: URL(fileURLWithPath: path))
        return data
    }

    private func makeInbox(_ directory: TemporaryDirectory) throws -> String {
        let inbox = directory.subdirectory("inbox")
        try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
        return inbox
    }
}

/// `data` in blocks of `size` bytes, read once: a stream of unknown length.
struct Blocks: AsyncSequence {
    let data: Data
    let size: Int

    struct AsyncIterator: AsyncIteratorProtocol {
        let data: Data
        let size: Int
        var offset = 0

        mutating func next() async -> [UInt8]? {
            guard offset < data.count else { return nil }
            let end = Swift.min(data.count, offset + size)
            defer { offset = end }
            return [UInt8](data[offset..<end])
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(data: data, size: size) }
}

/// Where the proxy's count stood when the link was cut.
final class CutMark: Sendable {
    let offset = Mutex<Int?>(nil)

    /// A progress callback that logs each report and cuts `proxy` once, the first time `bytes`
    /// are acknowledged, marking the proxy's count then.
    func cutting(_ proxy: FreezingProxy, after bytes: Int, logging log: ProgressLog)
        -> @Sendable (TransferProgress) -> Void
    {
        { progress in
            log.append(progress)
            guard progress.bytesDone >= UInt64(bytes) else { return }
            let first = self.offset.withLock { cut in
                defer { cut = cut ?? proxy.bytesForwarded }
                return cut == nil
            }
            if first { proxy.cut() }
        }
    }
}

/// Progress reports, in order.
final class ProgressLog: Sendable {
    private let reports = Mutex<[TransferProgress]>([])

    var all: [TransferProgress] { reports.withLock { $0 } }

    func append(_ progress: TransferProgress) { reports.withLock { $0.append(progress) } }

    /// Waits until a report satisfies `condition`, at most 20 s.
    func wait(until condition: (TransferProgress) -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while !all.contains(where: condition) {
            guard ContinuousClock.now < deadline else {
                Issue.record("no progress report came; last: \(String(describing: all.last))")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

extension EventRecorder {
    /// Waits for a `fileOffered` event (of transfer `id`, if given) and returns its offer.
    func offer(_ id: TransferID? = nil) async throws -> FileOffer {
        func match(_ event: ParleyNode.Event) -> FileOffer? {
            if case .fileOffered(let offer) = event, id == nil || offer.id == id { return offer }
            return nil
        }
        try await wait("a file offer") { $0.contains { match($0) != nil } }
        return try #require(all.lazy.compactMap(match).first)
    }
}

extension [ParleyNode.Event] {
    func hasStatus(_ id: TransferID, _ outcome: TransferOutcome) -> Bool {
        contains { event in
            if case .transferStatus(let status) = event { return status.id == id && status.outcome == outcome }
            return false
        }
    }
}

extension ParleyNode.Event {
    fileprivate func isPeer(_ node: ParleyNode.NodeID) -> Bool {
        if case .peerUp(let info) = self { return info.nodeID == node }
        return false
    }
}
