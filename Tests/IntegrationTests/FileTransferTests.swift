import Crypto
import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import Synchronization
import Testing

/// A file of `size` random bytes in `directory`; returns its path and bytes.
private func makeRandomFile(_ size: Int, named name: String = "data.bin", in directory: TemporaryDirectory) throws
    -> (path: String, bytes: [UInt8])
{
    // xorshift64 from a random seed: fast, and not compressible.
    var state = UInt64.random(in: 1...UInt64.max)
    var bytes = [UInt8](repeating: 0, count: size)
    for index in 0..<size {
        if index % 8 == 0 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
        }
        bytes[index] = UInt8(truncatingIfNeeded: state >> (8 * UInt64(index % 8)))
    }
    let path = directory.url.appendingPathComponent(name).path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return (path, bytes)
}

private func contents(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// The visible and hidden entries of a folder.
private func entries(_ directory: TemporaryDirectory) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
}

extension TestClient {
    /// Waits for an offer of transfer `id` (any, when nil).
    func waitForOffer(_ id: TransferID? = nil, after skip: Int = 0) async throws -> FileOffer {
        try await waitForEvent("a file offer", after: skip) { event -> FileOffer? in
            if case .transferOffered(let offer) = event, id == nil || offer.id == id { return offer }
            return nil
        }
    }

    /// Waits for how transfer `id` ended.
    func waitForStatus(_ id: TransferID, timeout: Duration = .seconds(30)) async throws -> TransferStatus {
        try await waitForEvent("the status of transfer \(id)", timeout: timeout) { event -> TransferStatus? in
            if case .transferStatus(let status) = event, status.id == id { return status }
            return nil
        }
    }
}

/// Records progress reports and cancels the task running the transfer once `cutAt` bytes are
/// done (to interrupt a transfer in the middle).
private final class ProgressLog: Sendable {
    let reports = Mutex<[TransferProgress]>([])
    let cutAt: UInt64?
    let cut = Mutex<(@Sendable () -> Void)?>(nil)

    init(cutAt: UInt64? = nil) {
        self.cutAt = cutAt
    }

    func record(_ progress: TransferProgress) {
        reports.withLock { $0.append(progress) }
        if let cutAt, progress.bytesDone >= cutAt { cut.withLock { $0 }?() }
    }

    var last: TransferProgress? { reports.withLock { $0.last } }
    var first: TransferProgress? { reports.withLock { $0.first } }
}

/// Runs `body` with a server (changed by `changes`) and two clients, registered as alice and bob.
private func withAliceAndBob(
    _ changes: ServerChanges = .none,
    _ body: (TestServer, TestClient, UserID, TestClient, UserID) async throws -> Void
) async throws {
    try await withTestServer(changes) { server in
        try await withTestClients(2, of: server.clientConfiguration) { clients in
            let (alice, bob) = (clients[0], clients[1])
            let aliceID = try await alice.register("alice")
            let bobID = try await bob.register("bob")
            try await body(server, alice, aliceID, bob, bobID)
        }
    }
}

@Suite("File and stream transfer", .timeLimit(.minutes(2)))
struct FileTransferTests {
    @Test("a file goes through the server to an online recipient; both see progress; the sender is told it arrived")
    func throughServerOnline() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        let inbox = try TemporaryDirectory()
        defer { inbox.remove() }
        try await withAliceAndBob { server, alice, _, bob, bobID in
            // More than the window of 8 chunks of 256 KiB, and not a multiple of a chunk.
            let (path, bytes) = try makeRandomFile(3 * 1024 * 1024 + 12_345, named: "report.pdf", in: files)
            let sent = ProgressLog()
            let id = try await alice.client.sendFile(at: path, to: bobID) { sent.record($0) }
            #expect(sent.last?.bytesDone == UInt64(bytes.count))
            #expect(sent.last?.totalBytes == UInt64(bytes.count))

            let offer = try await bob.waitForOffer(id)
            #expect(offer.name == "report.pdf")
            #expect(offer.size == UInt64(bytes.count))
            #expect(offer.sha256 == Array(SHA256.hash(data: bytes)))
            let received = ProgressLog()
            let saved = try await bob.client.receiveFile(offer, into: inbox.path) { received.record($0) }
            #expect(saved == inbox.path + "/report.pdf")
            #expect(try contents(saved) == bytes)
            #expect(received.last?.bytesDone == UInt64(bytes.count))
            #expect(try entries(inbox) == ["report.pdf"])

            let status = try await alice.waitForStatus(id)
            #expect(status.outcome == .completed)
            #expect(status.recipient == bobID)
            // The server holds nothing more: no row, no spool file.
            #expect(try await alice.client.transfers().isEmpty)
            #expect(try await server.server.heldFiles().isEmpty)
            let spool = try FileManager.default.contentsOfDirectory(
                atPath: server.server.configuration.dataDirectory + "/transfers")
            #expect(spool.isEmpty)
        }
    }

    @Test(
        "a file sent while the recipient is offline is offered at its next logon; a second file never overwrites the first"
    )
    func offlineRecipient() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        let inbox = try TemporaryDirectory()
        defer { inbox.remove() }
        try await withAliceAndBob { server, alice, _, bob, bobID in
            try await bob.client.logOff()
            let (first, firstBytes) = try makeRandomFile(70_000, named: "notes.txt", in: files)
            let firstID = try await alice.client.sendFile(at: first, to: bobID)
            let later = try TemporaryDirectory()
            defer { later.remove() }
            let (second, secondBytes) = try makeRandomFile(5_000, named: "notes.txt", in: later)
            let secondID = try await alice.client.sendFile(at: second, to: bobID)
            #expect(firstID != secondID)
            let held = try await alice.client.transfers()
            #expect(held.map(\.offer.id) == [firstID, secondID])
            #expect(held.allSatisfy { $0.isReady })

            let skip = bob.events.items.count
            _ = try await bob.client.logOn(userID: bobID, password: "secret")
            let offer1 = try await bob.waitForOffer(firstID, after: skip)
            let offer2 = try await bob.waitForOffer(secondID, after: skip)
            let saved1 = try await bob.client.receiveFile(offer1, into: inbox.path)
            let saved2 = try await bob.client.receiveFile(offer2, into: inbox.path)
            #expect(saved1 == inbox.path + "/notes.txt")
            #expect(saved2 == inbox.path + "/notes (1).txt")
            #expect(try contents(saved1) == firstBytes)
            #expect(try contents(saved2) == secondBytes)
            #expect(try await alice.waitForStatus(firstID).outcome == .completed)
            #expect(try await alice.waitForStatus(secondID).outcome == .completed)
        }
    }

    @Test("a declined file is deleted and the sender told; an offline sender is told at its next logon")
    func declined() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        try await withAliceAndBob { server, alice, aliceID, bob, bobID in
            let (path, _) = try makeRandomFile(10_000, in: files)
            let id = try await alice.client.sendFile(at: path, to: bobID)
            try await alice.client.logOff()
            let offer = try await bob.waitForOffer(id)
            try await bob.client.declineFile(offer, reason: "no thanks")
            try await expectError(.transferNotFound) {
                try await bob.client.receiveFile(offer, into: files.path)
            }
            let skip = alice.events.items.count
            _ = try await alice.client.logOn(userID: aliceID, password: "secret")
            let status = try await alice.waitForEvent("the declined status", after: skip) {
                event -> TransferStatus? in
                if case .transferStatus(let status) = event, status.id == id { return status }
                return nil
            }
            #expect(status.outcome == .declined)
            #expect(status.reason == "no thanks")
            #expect(try await alice.client.transfers().isEmpty)
        }
    }

    @Test("the maximum file size and the recipient's quota are enforced with their own errors, for files and streams")
    func limits() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        let limits = ServerChanges { configuration in
            configuration.maximumFileSize = 100_000
            configuration.transferQuota = 150_000
        }
        try await withAliceAndBob(limits) { server, alice, _, bob, bobID in
            let (big, _) = try makeRandomFile(100_001, named: "big.bin", in: files)
            let tooLarge = try await expectError(.fileTooLarge) {
                try await alice.client.sendFile(at: big, to: bobID)
            }
            #expect(tooLarge.message.contains("100000"))
            let (fits, _) = try makeRandomFile(100_000, named: "fits.bin", in: files)
            try await alice.client.sendFile(at: fits, to: bobID)
            let (more, _) = try makeRandomFile(60_000, named: "more.bin", in: files)
            try await expectError(.transferQuotaExceeded) { try await alice.client.sendFile(at: more, to: bobID) }
            // A stream is checked as it grows.
            let pieces = AsyncStream<[UInt8]> { continuation in
                for _ in 0..<30 { continuation.yield([UInt8](repeating: 7, count: 5_000)) }
                continuation.finish()
            }
            try await expectError(.fileTooLarge) {
                try await alice.client.sendStream(pieces, named: "endless.log", to: bobID)
            }
            #expect(try await alice.client.transfers().map(\.offer.name) == ["fits.bin"])
        }
    }

    @Test("names with path separators, leading dots or control characters are refused; offered names are sanitised")
    func fileNames() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        try await withAliceAndBob { server, alice, _, bob, bobID in
            let (path, _) = try makeRandomFile(100, in: files)
            for name in [
                "../../etc/passwd", "a/b", "..", ".bashrc", "a\\b", "bell\u{07}", "",
                String(repeating: "x", count: 256),
            ] {
                try await expectError(.invalidFileName) {
                    try await alice.client.sendFile(at: path, to: bobID, name: name, id: .random())
                }
            }
            #expect(try await alice.client.transfers().isEmpty)
        }
        #expect(FileName.sanitized("../../etc/passwd") == "_.._etc_passwd")
        #expect(FileName.sanitized(".bashrc") == "bashrc")
        #expect(FileName.sanitized("a\u{0}b\nc") == "a_b_c")
        #expect(FileName.sanitized("...") == "file")
        #expect(FileName.sanitized("report.pdf") == "report.pdf")
        #expect(FileName.unused("a.tar") { ["a.tar", "a (1).tar"].contains($0) } == "a (2).tar")
        // A partial file's name says whose transfer it continues (`transfers list --files`).
        let offer = FileOffer(
            id: TransferID(77), sender: UserID(1001), recipient: UserID(1002), name: "my.report.pdf", size: 5,
            sha256: [], isStream: false, createdAt: Date(), expiresAt: Date())
        let partial = try #require(ParleyClient.partialTransfer(named: ParleyClient.partialName(of: offer)))
        #expect(partial.name == "my.report.pdf" && partial.sender == UserID(1001) && partial.id == TransferID(77))
        for other in [
            "my.report.pdf", ".x.parley-part", ".x.1001.parley-part", ".x.a-1.parley-part", "..1-2.parley-part",
        ] {
            #expect(ParleyClient.partialTransfer(named: other) == nil, "\(other)")
        }
    }

    @Test("a stream of unknown length arrives whole, hashed as it was read")
    func stream() async throws {
        let inbox = try TemporaryDirectory()
        defer { inbox.remove() }
        try await withAliceAndBob { server, alice, _, bob, bobID in
            var expected: [UInt8] = []
            var pieces: [[UInt8]] = []
            for index in 0..<200 {
                let piece = [UInt8](repeating: UInt8(index % 256), count: 1 + (index * 7_919) % 20_000)
                pieces.append(piece)
                expected += piece
            }
            let stream = AsyncStream<[UInt8]> { continuation in
                for piece in pieces { continuation.yield(piece) }
                continuation.finish()
            }
            let sent = ProgressLog()
            let id = try await alice.client.sendStream(stream, named: "capture.log", to: bobID) { sent.record($0) }
            #expect(sent.first?.totalBytes == nil)
            let offer = try await bob.waitForOffer(id)
            #expect(offer.isStream)
            #expect(offer.size == UInt64(expected.count))
            let saved = try await bob.client.receiveFile(offer, into: inbox.path)
            #expect(try contents(saved) == expected)
        }
    }

    @Test("a corrupt spool file is caught by the receiver's hash: an error, no file presented, the sender told")
    func hashMismatch() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        let inbox = try TemporaryDirectory()
        defer { inbox.remove() }
        try await withAliceAndBob { server, alice, aliceID, bob, bobID in
            let (path, _) = try makeRandomFile(600_000, named: "photo.jpg", in: files)
            let id = try await alice.client.sendFile(at: path, to: bobID)
            let offer = try await bob.waitForOffer(id)
            // Flip one byte in the middle of what the server holds.
            let spool = "\(server.server.configuration.dataDirectory)/transfers/\(aliceID.rawValue)-\(id.rawValue).part"
            let handle = try #require(FileHandle(forUpdatingAtPath: spool))
            try handle.seek(toOffset: 300_000)
            let byte = try #require(try handle.read(upToCount: 1)).first ?? 0
            try handle.seek(toOffset: 300_000)
            try handle.write(contentsOf: Data([byte ^ 0xFF]))
            try handle.close()

            try await expectError(.transferHashMismatch) {
                try await bob.client.receiveFile(offer, into: inbox.path)
            }
            #expect(try entries(inbox).isEmpty)
            #expect(try await alice.waitForStatus(id).outcome == .failed)
        }
    }

    @Test("an upload and a download cut in the middle resume from the acknowledged offset, not from zero")
    func resumeAfterInterruption() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        let inbox = try TemporaryDirectory()
        defer { inbox.remove() }
        try await withAliceAndBob { server, alice, _, bob, bobID in
            let (path, bytes) = try makeRandomFile(6 * 1024 * 1024, in: files)
            let id = TransferID.random()

            // The sender stops (its task is cancelled) after 1 MiB is acknowledged.
            let cutUpload = ProgressLog(cutAt: 1 << 20)
            let upload = Task { try await alice.client.sendFile(at: path, to: bobID, id: id) { cutUpload.record($0) } }
            cutUpload.cut.withLock { $0 = { upload.cancel() } }
            if cutUpload.last.map({ $0.bytesDone >= 1 << 20 }) == true { upload.cancel() }
            await #expect(throws: ParleyError.self) { try await upload.value }
            let held = try #require(try await alice.client.transfers().first)
            #expect(held.heldBytes >= 1 << 20)
            #expect(held.heldBytes < UInt64(bytes.count))

            let resumed = ProgressLog()
            try await alice.client.sendFile(at: path, to: bobID, id: id) { resumed.record($0) }
            #expect(resumed.first?.resumedFrom == held.heldBytes)

            // The receiver stops after 1 MiB is on its disk, then fetches the rest.
            let offer = try await bob.waitForOffer(id)
            let cutDownload = ProgressLog(cutAt: 1 << 20)
            let download = Task { try await bob.client.receiveFile(offer, into: inbox.path) { cutDownload.record($0) } }
            cutDownload.cut.withLock { $0 = { download.cancel() } }
            if cutDownload.last.map({ $0.bytesDone >= 1 << 20 }) == true { download.cancel() }
            await #expect(throws: ParleyError.self) { try await download.value }
            let partial = try entries(inbox)
            #expect(partial.count == 1 && partial[0].hasSuffix(".parley-part") && partial[0].hasPrefix("."))
            let partialSize = try #require(
                (try FileManager.default.attributesOfItem(atPath: inbox.path + "/" + partial[0])[.size] as? NSNumber)?
                    .intValue)
            #expect(partialSize >= 1 << 20)

            let rest = ProgressLog()
            let saved = try await bob.client.receiveFile(offer, into: inbox.path) { rest.record($0) }
            #expect(rest.first?.resumedFrom == UInt64(partialSize))
            #expect(try contents(saved) == bytes)
            #expect(try entries(inbox) == ["data.bin"])
            #expect(try await alice.waitForStatus(id).outcome == .completed)
        }
    }

    @Test("the sender cancels a file before it is fetched: the recipient is told and cannot fetch it")
    func senderCancels() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        try await withAliceAndBob { server, alice, _, bob, bobID in
            let (path, _) = try makeRandomFile(1_000, in: files)
            let id = try await alice.client.sendFile(at: path, to: bobID)
            let offer = try await bob.waitForOffer(id)
            try await alice.client.cancelTransfer(id)
            #expect(try await bob.waitForStatus(id).outcome == .cancelled)
            #expect(try await alice.waitForStatus(id).outcome == .cancelled)
            try await expectError(.transferNotFound) { try await bob.client.receiveFile(offer, into: files.path) }
            try await expectError(.transferNotFound) { try await alice.client.cancelTransfer(id) }
        }
    }

    @Test("the recipient gives up a file it partly received: the sender is told, the partial file goes")
    func recipientCancels() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        let inbox = try TemporaryDirectory()
        defer { inbox.remove() }
        try await withAliceAndBob { _, alice, _, bob, bobID in
            let (path, _) = try makeRandomFile(3 * 1024 * 1024, in: files)
            let id = try await alice.client.sendFile(at: path, to: bobID)
            let offer = try await bob.waitForOffer(id)
            let cut = ProgressLog(cutAt: 1)
            let download = Task { try await bob.client.receiveFile(offer, into: inbox.path) { cut.record($0) } }
            cut.cut.withLock { $0 = { download.cancel() } }
            if cut.last != nil { download.cancel() }
            await #expect(throws: ParleyError.self) { try await download.value }
            #expect(try entries(inbox).count == 1)
            try await bob.client.cancelFile(offer, partialIn: inbox.path, reason: "changed my mind")
            #expect(try entries(inbox).isEmpty)
            let status = try await alice.waitForStatus(id)
            #expect(status.outcome == .cancelled)
            #expect(status.reason == "changed my mind")
            #expect(try await alice.client.transfers().isEmpty)
        }
    }

    @Test("the admin lists and deletes held files; retention expires what is not fetched; the application can refuse")
    func adminRetentionAndHook() async throws {
        let files = try TemporaryDirectory()
        defer { files.remove() }
        let changes = ServerChanges { configuration in
            configuration.application = RefusingExecutables()
            // Long enough that the held file is still there for the admin's listing and delete
            // when a full CI run slows everything (2 s was once too short).
            configuration.transferRetention = .seconds(8)
            configuration.pruneInterval = .milliseconds(100)
        }
        try await withAliceAndBob(changes) { server, alice, aliceID, bob, bobID in
            let (path, _) = try makeRandomFile(1_000, named: "setup.exe", in: files)
            try await expectError(.transferRefused) { try await alice.client.sendFile(at: path, to: bobID) }

            let (kept, _) = try makeRandomFile(1_000, named: "kept.txt", in: files)
            let id = try await alice.client.sendFile(at: kept, to: bobID)
            let listed = try await server.server.heldFiles()
            #expect(listed.map(\.name) == ["kept.txt"])
            #expect(listed.first?.heldBytes == 1_000)
            #expect(try await server.server.deleteHeldFile(sender: aliceID, id: id))
            #expect(try await alice.waitForStatus(id).outcome == .deleted)
            #expect(try await bob.waitForStatus(id).outcome == .deleted)

            let expiring = try await alice.client.sendFile(at: kept, to: bobID, id: .random())
            #expect(try await alice.waitForStatus(expiring, timeout: .seconds(40)).outcome == .expired)
            #expect(try await server.server.heldFiles().isEmpty)
        }
    }
}

/// A server application that refuses files whose name ends in ".exe".
private struct RefusingExecutables: ParleyServerApplication {
    var vetoesTransfers: Bool { true }
    func shouldAcceptTransfer(_ request: TransferRequest, server: ParleyServer) async -> Bool {
        !request.name.hasSuffix(".exe")
    }
}
