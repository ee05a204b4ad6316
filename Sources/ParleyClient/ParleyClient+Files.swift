import Crypto
import Foundation
package import NIOCore
public import ParleyCore
import ParleyWire

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

// File and stream transfer (docs/PROTOCOL.md section 26): sending a file or a stream through the
// server in chunks, receiving the files offered to this user, and listing, cancelling and
// declining transfers. Memory stays bounded whatever the file's size: at most
// `transferWindow` chunks are read ahead of the server's acknowledgements, or fetched ahead of
// what is written to disk.

/// A transfer the server holds that this user sent or receives (``ParleyClient/transfers()``).
public struct HeldTransfer: Sendable, Hashable {
    /// What it is; its size and SHA-256 are final only once ``isReady``.
    public var offer: FileOffer
    /// The whole file is on the server, verified and offered to the recipient.
    public var isReady: Bool
    /// The bytes the server holds.
    public var heldBytes: UInt64

    public init(offer: FileOffer, isReady: Bool, heldBytes: UInt64) {
        self.offer = offer
        self.isReady = isReady
        self.heldBytes = heldBytes
    }
}

extension ParleyClient {
    /// Chunks in flight in either direction: 8 chunks of the server's size (256 KiB by default).
    static let transferWindow = 8
    /// How many times a transfer picks up again after the connection failed, in a row, without
    /// any progress in between.
    static let transferRetries = 20

    /// Sends the file at `path` to `recipient` through the server, and returns once the server
    /// has all of it with the right SHA-256 (it then offers it to the recipient; a
    /// ``ParleyClientEvent/transferStatus(_:)`` event tells how it ended).
    ///
    /// After a lost connection it resumes from the offset the server acknowledged, within the
    /// call. A transfer interrupted otherwise (this process stopped) resumes when the same file
    /// is sent again with the same `id`: only the bytes the server lacks are sent.
    ///
    /// - Parameters:
    ///   - path: the file to send.
    ///   - recipient: the user it is for.
    ///   - name: the name the recipient sees; the path's last component by default.
    ///   - id: the transfer's ID; by default one derived from the path, size, modification time
    ///     and recipient, so sending the same file again resumes.
    ///   - progress: called after each acknowledged chunk.
    /// - Returns: the transfer's ID.
    /// - Throws: ``/ParleyCore/ParleyError`` with `fileTooLarge`, `transferQuotaExceeded`,
    ///   `transferRefused`, `invalidFileName`, `userNotFound`, `transferHashMismatch` (the file
    ///   changed while it was sent), `storageError` when the file cannot be read, or a
    ///   connection error once retries are exhausted.
    @discardableResult
    public func sendFile(
        at path: String,
        to recipient: UserID,
        name: String? = nil,
        id: TransferID? = nil,
        progress: @escaping @Sendable (TransferProgress) -> Void = { _ in }
    ) async throws(ParleyError) -> TransferID {
        let (size, derivedID) = try Self.fileIdentity(of: path, for: String(recipient.rawValue))
        let transferID = id ?? derivedID
        var source = try FileChunkSource(path: path)
        var start = Parley_V1_TransferStart()
        start.transferID = transferID.rawValue
        start.recipient = recipient.rawValue
        start.name = name ?? URL(fileURLWithPath: path).lastPathComponent
        start.size = size
        try await upload(start, from: &source, progress: progress)
        return transferID
    }

    /// Sends a stream of bytes of unknown length to `recipient` through the server, and returns
    /// once the server has all of it with the right SHA-256.
    ///
    /// After a lost connection it resumes within the call (the chunks the server has not
    /// acknowledged are kept, at most 8). A stream cannot be read again, so one interrupted by the
    /// end of this process cannot be resumed.
    ///
    /// - Parameters:
    ///   - bytes: the stream, in pieces of any size.
    ///   - name: the name the recipient sees.
    ///   - recipient: the user it is for.
    ///   - id: the transfer's ID (random by default).
    ///   - progress: called after each acknowledged chunk (its total is nil until the end).
    /// - Returns: the transfer's ID.
    /// - Throws: as ``sendFile(at:to:name:id:progress:)``; `fileTooLarge` once the stream grows
    ///   past the server's maximum.
    @discardableResult
    public func sendStream<Bytes: AsyncSequence>(
        _ bytes: Bytes,
        named name: String,
        to recipient: UserID,
        id: TransferID = .random(),
        progress: @escaping @Sendable (TransferProgress) -> Void = { _ in }
    ) async throws(ParleyError) -> TransferID where Bytes.Element == [UInt8] {
        var source = StreamChunkSource(iterator: bytes.makeAsyncIterator())
        try await sendStream(from: &source, named: name, to: recipient, id: id, progress: progress)
        return id
    }

    /// ``sendStream(_:named:to:id:progress:)`` from a source whose unacknowledged bytes the
    /// caller may have started elsewhere (a node's direct attempt that never sent a byte).
    package func sendStream(
        from source: inout some ChunkSource,
        named name: String,
        to recipient: UserID,
        id: TransferID,
        progress: @escaping @Sendable (TransferProgress) -> Void
    ) async throws(ParleyError) {
        var start = Parley_V1_TransferStart()
        start.transferID = id.rawValue
        start.recipient = recipient.rawValue
        start.name = name
        start.stream = true
        try await upload(start, from: &source, progress: progress)
    }

    /// Gives up a transfer this user sent: the server deletes what it holds and tells the
    /// recipient if it was offered.
    ///
    /// - Throws: `transferNotFound` when the server no longer holds it.
    public func cancelTransfer(_ id: TransferID, reason: String = "") async throws(ParleyError) {
        try await closeTransfer(sender: .server, id: id, outcome: .cancelled, reason: reason)
    }

    /// Declines a file offered to this user: the server deletes it and tells the sender.
    public func declineFile(_ offer: FileOffer, reason: String = "") async throws(ParleyError) {
        try await closeTransfer(sender: offer.sender, id: offer.id, outcome: .declined, reason: reason)
    }

    /// Gives up a file offered to this user, also one partly received: the server deletes it and
    /// tells the sender `cancelled`. The partial file in `directory` (if given) is deleted too.
    public func cancelFile(_ offer: FileOffer, partialIn directory: String? = nil, reason: String = "")
        async throws(ParleyError)
    {
        try await closeTransfer(sender: offer.sender, id: offer.id, outcome: .cancelled, reason: reason)
        if let directory {
            let partial = URL(fileURLWithPath: directory).appendingPathComponent(Self.partialName(of: offer)).path
            if unlink(partial) != 0, errno != ENOENT {
                let why = String(cString: strerror(errno))
                throw ParleyError(code: .storageError, message: "cannot delete \(partial): \(why)")
            }
        }
    }

    /// The size of the file at `path`, and the transfer ID derived from its path, size and
    /// modification time and from `recipient`: sending the same file again resumes.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with `storageError` when the file cannot be read.
    package static func fileIdentity(of path: String, for recipient: String) throws(ParleyError) -> (
        size: UInt64, id: TransferID
    ) {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw ParleyError(code: .storageError, message: "cannot read \(path)", cause: error)
        }
        let size = (attributes[.size] as? NSNumber)?.uint64Value ?? 0
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        return (size, TransferID.derived(from: [absolute, String(size), String(modified), recipient]))
    }

    /// The name of the partial file of `offer` in a receive folder.
    package static func partialName(of offer: FileOffer) -> String {
        ".\(FileName.sanitized(offer.name)).\(offer.sender.rawValue)-\(offer.id.rawValue).parley-part"
    }

    /// What a partial file's name (``partialName(of:)``) says: the file's name, its sender and
    /// the transfer's ID; nil for any other name.
    package static func partialTransfer(named fileName: String) -> (
        name: String, sender: UserID, id: TransferID
    )? {
        let suffix = ".parley-part"
        guard fileName.hasPrefix("."), fileName.hasSuffix(suffix) else { return nil }
        let body = fileName.dropFirst().dropLast(suffix.count)
        guard let dot = body.lastIndex(of: ".") else { return nil }
        let parts = body[body.index(after: dot)...].split(separator: "-")
        guard parts.count == 2, let sender = UInt32(parts[0]), let id = UInt64(parts[1]), dot > body.startIndex
        else { return nil }
        return (String(body[..<dot]), UserID(sender), TransferID(id))
    }

    /// The transfers the server holds that this user sent or receives, oldest first.
    public func transfers() async throws(ParleyError) -> [HeldTransfer] {
        let list: Parley_V1_TransferList = try await request(.listTransfers, Parley_V1_Empty())
        return list.transfers.map { info in
            HeldTransfer(offer: info.offer, isReady: info.phase == .ready, heldBytes: info.offset)
        }
    }

    /// Downloads a file offered to this user into `directory`, checks its SHA-256, and returns
    /// the path it was saved at.
    ///
    /// The bytes go to `.NAME.SENDER-ID.parley-part` in `directory` first; a call for the same
    /// offer after a lost connection or a restart continues from that file's length. The file
    /// gets its final name (``/ParleyCore/FileName/sanitized(_:)`` of the offered one, never over an
    /// existing file: `name (1).ext`) only once its hash matches; then the server is told, and
    /// tells the sender.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with `transferHashMismatch` when the bytes do not
    ///   have the offered hash (the partial file is deleted and the transfer closed as failed),
    ///   `transferNotFound` when the server no longer holds it, `storageError` when the folder
    ///   cannot be written, or a connection error once retries are exhausted.
    @discardableResult
    public func receiveFile(
        _ offer: FileOffer,
        into directory: String,
        progress: @escaping @Sendable (TransferProgress) -> Void = { _ in }
    ) async throws(ParleyError) -> String {
        let name = FileName.sanitized(offer.name)
        let folder = URL(fileURLWithPath: directory)
        let partial = folder.appendingPathComponent(Self.partialName(of: offer)).path
        var sink = try FileChunkSink(path: partial, expectedSize: offer.size)
        let resumedFrom = sink.size
        let started = ContinuousClock.now
        var failures = 0
        while sink.size < offer.size {
            let before = sink.size
            do throws(ParleyError) {
                try await download(offer, into: &sink) { done in
                    progress(Self.progress(offer.id, done, offer.size, resumedFrom, started))
                }
            } catch {
                guard Self.mayResume(error) else { throw error }
                failures = sink.size > before ? 1 : failures + 1
                guard failures <= Self.transferRetries else { throw error }
                logger.debug("resuming a download", metadata: ["transfer.id": "\(offer.id)", "error": "\(error)"])
            }
        }
        try sink.finish()
        guard sink.size == offer.size, sink.digest == offer.sha256 else {
            sink.remove()
            try? await closeTransfer(
                sender: offer.sender, id: offer.id, outcome: .failed, reason: "the SHA-256 does not match")
            throw ParleyError(
                code: .transferHashMismatch,
                message:
                    "\(offer.name.debugDescription) from user \(offer.sender) arrived with another SHA-256; it was discarded"
            )
        }
        let saved = try sink.publish(in: folder.path, as: name)
        try await closeTransfer(sender: offer.sender, id: offer.id, outcome: .completed, reason: "")
        progress(Self.progress(offer.id, offer.size, offer.size, resumedFrom, started))
        return saved
    }

    // MARK: Internals

    func receivedTransferEvent(_ frame: Frame) {
        switch frame.type {
        case .transferOffer:
            guard let info: Parley_V1_TransferInfo = try? frame.decodeMeta(), info.sha256.count == 32 else {
                logger.debug("dropping a TRANSFER_OFFER event with an unreadable meta section")
                return
            }
            emit(.transferOffered(info.offer))
        default:
            guard let event: Parley_V1_TransferStatusEvent = try? frame.decodeMeta(), let status = event.status else {
                logger.debug("dropping a TRANSFER_STATUS event this client cannot read")
                return
            }
            emit(.transferStatus(status))
        }
    }

    private func closeTransfer(
        sender: UserID, id: TransferID, outcome: TransferOutcome, reason: String
    ) async throws(ParleyError) {
        var close = Parley_V1_TransferClose()
        close.sender = sender.rawValue
        close.transferID = id.rawValue
        close.outcome = Parley_V1_TransferOutcome(outcome)
        close.reason = reason
        let _: Parley_V1_Empty = try await request(.transferClose, close)
    }

    static func checkCancellation() throws(ParleyError) {
        if Task.isCancelled { throw ParleyError(code: .cancelled, message: "the transfer was cancelled") }
    }

    /// Whether a transfer may pick up again after `error`: the connection failed, not the
    /// transfer.
    static func mayResume(_ error: ParleyError) -> Bool {
        [.notConnected, .timedOut, .shuttingDown, .transferOffsetMismatch].contains(error.code)
            && !Task.isCancelled
    }

    package static func progress(
        _ id: TransferID, _ done: UInt64, _ total: UInt64?, _ resumedFrom: UInt64, _ started: ContinuousClock.Instant
    ) -> TransferProgress {
        let elapsed = (ContinuousClock.now - started).timeInterval
        let rate = elapsed > 0 ? Double(done - min(done, resumedFrom)) / elapsed : 0
        return TransferProgress(
            id: id, bytesDone: done, totalBytes: total, resumedFrom: resumedFrom, bytesPerSecond: rate)
    }

    /// Uploads until the server holds the whole file, resuming after lost connections.
    private func upload(
        _ start: Parley_V1_TransferStart,
        from source: inout some ChunkSource,
        progress: @escaping @Sendable (TransferProgress) -> Void
    ) async throws(ParleyError) {
        let id = TransferID(start.transferID)
        let total: UInt64? = start.stream ? nil : start.size
        var started = ContinuousClock.now
        var resumedFrom: UInt64?
        var failures = 0
        var acknowledged: UInt64 = 0
        while true {
            let before = acknowledged
            do throws(ParleyError) {
                let timeout = configuration.retry.requestTimeout
                let connection = try await readyConnection(timeout: timeout)
                let state: Parley_V1_TransferState = try await connection.request(
                    .transferStart, start, timeout: timeout)
                switch state.phase {
                case .ready:
                    progress(Self.progress(id, state.offset, state.offset, state.offset, started))
                    return
                case .closed:
                    throw ParleyError(
                        code: .transferNotFound,
                        message: "transfer \(id) was closed already (\(state.outcome.outcome?.rawValue ?? "unknown"))")
                default:
                    break
                }
                acknowledged = state.offset
                // Where this run (or its latest resume after a lost connection) started: the
                // rate counts from there.
                resumedFrom = state.offset
                started = ContinuousClock.now
                let chunkSize = Int(max(state.chunkSize, 1))
                var next = state.offset
                var inFlight: [EventLoopFuture<Frame>] = []
                var ended = false
                do throws(ParleyError) {
                    while !ended || !inFlight.isEmpty {
                        while !ended, inFlight.count < Self.transferWindow {
                            try Self.checkCancellation()
                            let bytes = try await source.chunk(at: next, maximum: chunkSize)
                            guard !bytes.isEmpty else {
                                ended = true
                                break
                            }
                            var meta = Parley_V1_TransferChunk()
                            meta.transferID = id.rawValue
                            meta.offset = next
                            // Sent now, in order; the answers are awaited oldest first.
                            inFlight.append(
                                connection.send(
                                    .transferChunk, meta, payload: ByteBuffer(bytes: bytes), timeout: timeout)
                            )
                            next += UInt64(bytes.count)
                        }
                        guard !inFlight.isEmpty else { break }
                        let state: Parley_V1_TransferState
                        do {
                            state = try await inFlight.removeFirst().get().decodeMeta()
                        } catch {
                            throw TransferFailure.parleyError(error)
                        }
                        acknowledged = max(acknowledged, state.offset)
                        source.acknowledged(upTo: acknowledged)
                        progress(Self.progress(id, acknowledged, total, resumedFrom ?? 0, started))
                    }
                } catch {
                    // Let the chunks already sent be answered (each outcome is irrelevant now), so
                    // that once this call ends nothing of it is still on its way to the server.
                    for pending in inFlight { _ = try? await pending.get() }
                    throw error
                }
                var end = Parley_V1_TransferEnd()
                end.transferID = id.rawValue
                end.size = next
                end.sha256 = Data(try await source.digest())
                // The server hashes the whole file before it answers: give it time for a large one.
                let _: Parley_V1_TransferState = try await connection.request(
                    .transferEnd, end, timeout: timeout + .seconds(Int64(next >> 26)))
                progress(Self.progress(id, next, next, resumedFrom ?? 0, started))
                return
            } catch {
                guard Self.mayResume(error) else { throw error }
                failures = acknowledged > before ? 1 : failures + 1
                guard failures <= Self.transferRetries else { throw error }
                logger.debug("resuming an upload", metadata: ["transfer.id": "\(id)", "error": "\(error)"])
            }
        }
    }

    /// Fetches the rest of `offer` into `sink`, keeping ``transferWindow`` reads in flight and
    /// writing their answers in order. The first read (of the server's default length) tells
    /// the server's chunk size; the window opens after it.
    private func download(
        _ offer: FileOffer,
        into sink: inout FileChunkSink,
        progress: (UInt64) -> Void
    ) async throws(ParleyError) {
        let timeout = configuration.retry.requestTimeout
        let connection = try await readyConnection(timeout: timeout)
        var step: UInt64?
        var next = sink.size
        var inFlight: [EventLoopFuture<Frame>] = []
        while sink.size < offer.size {
            try Self.checkCancellation()
            while next < offer.size, inFlight.count < (step == nil ? 1 : Self.transferWindow) {
                var read = Parley_V1_TransferRead()
                read.sender = offer.sender.rawValue
                read.transferID = offer.id.rawValue
                read.offset = next
                read.length = UInt32(clamping: step ?? 0)
                inFlight.append(connection.send(.transferRead, read, payload: ByteBuffer(), timeout: timeout))
                next = step.map { next + $0 } ?? offer.size
            }
            guard !inFlight.isEmpty else { break }
            let answer: Frame
            do {
                answer = try await inFlight.removeFirst().get()
            } catch {
                throw TransferFailure.parleyError(error)
            }
            let meta: Parley_V1_TransferChunk = try answer.decodeMeta()
            let count = UInt64(answer.payload.readableBytes)
            guard meta.offset == sink.size, count > 0 else {
                throw ParleyError(
                    code: .transferOffsetMismatch,
                    message: "a read answered \(count) bytes at \(meta.offset); \(sink.size) of \(offer.size) are here")
            }
            try sink.write(answer.payload)
            progress(sink.size)
            if let step, count < step, sink.size < offer.size {
                throw ParleyError(
                    code: .transferOffsetMismatch, message: "the server's chunks got smaller than \(step) bytes")
            }
            if step == nil {
                step = count
                next = sink.size
            }
        }
    }
}

/// Turns errors from a task's `value` into ``/ParleyCore/ParleyError``.
enum TransferFailure {
    static func parleyError(_ error: any Error) -> ParleyError {
        if let error = error as? ParleyError { return error }
        if error is CancellationError { return ParleyError(code: .cancelled, message: "the transfer was cancelled") }
        return ParleyError(code: .internalError, message: "the transfer failed", cause: error)
    }
}

// MARK: - Sources and sinks

/// Where an upload's bytes come from: any offset the server has not acknowledged yet can be
/// asked again (after a lost connection).
package protocol ChunkSource {
    /// Up to `maximum` bytes at `offset`; empty at the end.
    mutating func chunk(at offset: UInt64, maximum: Int) async throws(ParleyError) -> [UInt8]
    /// The server holds everything before `offset`: it will not be asked again.
    mutating func acknowledged(upTo offset: UInt64)
    /// The SHA-256 of everything, once the end was reached.
    mutating func digest() async throws(ParleyError) -> [UInt8]
    /// Its bytes can be sent again from the start (to another destination): a file always, a
    /// stream only while nothing was read from it.
    var canStartOver: Bool { get }
}

/// A file read at any offset, hashed in order as it is read (on a resume, the part the server
/// had is read and hashed first).
package struct FileChunkSource: ChunkSource {
    package let path: String
    private let handle: FileHandle
    private var hasher = SHA256()
    private var hashed: UInt64 = 0

    package init(path: String) throws(ParleyError) {
        self.path = path
        do {
            handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        } catch {
            throw ParleyError(code: .storageError, message: "cannot open \(path)", cause: error)
        }
    }

    private func read(at offset: UInt64, count: Int) throws(ParleyError) -> [UInt8] {
        do {
            try handle.seek(toOffset: offset)
            return [UInt8](try handle.read(upToCount: count) ?? Data())
        } catch {
            throw ParleyError(code: .storageError, message: "cannot read \(path)", cause: error)
        }
    }

    package mutating func chunk(at offset: UInt64, maximum: Int) throws(ParleyError) -> [UInt8] {
        // Hash what comes before (a resumed upload starts past the part the server has).
        while hashed < offset {
            let block = try read(at: hashed, count: Int(min(UInt64(1 << 20), offset - hashed)))
            guard !block.isEmpty else { break }
            hasher.update(data: block)
            hashed += UInt64(block.count)
        }
        let bytes = try read(at: offset, count: maximum)
        if offset == hashed {
            hasher.update(data: bytes)
            hashed += UInt64(bytes.count)
        }
        return bytes
    }

    package mutating func acknowledged(upTo offset: UInt64) {}

    package var canStartOver: Bool { true }

    package mutating func digest() throws(ParleyError) -> [UInt8] {
        while true {
            let block = try read(at: hashed, count: 1 << 20)
            guard !block.isEmpty else { break }
            hasher.update(data: block)
            hashed += UInt64(block.count)
        }
        return Array(hasher.finalize())
    }
}

/// A stream read once: the chunks the server has not acknowledged are kept (at most the
/// window) so they can be sent again after a lost connection.
package struct StreamChunkSource<Iterator: AsyncIteratorProtocol>: ChunkSource where Iterator.Element == [UInt8] {
    private var iterator: Iterator
    private var pending: [UInt8] = []
    /// The offset of `pending`'s first byte.
    private var pendingStart: UInt64 = 0
    private var buffered: [UInt8] = []
    private var finished = false
    private var hasher = SHA256()

    package init(iterator: Iterator) {
        self.iterator = iterator
    }

    /// No byte of the stream was read yet: it can still go anywhere from its start.
    package var canStartOver: Bool { pendingStart == 0 && pending.isEmpty && buffered.isEmpty && !finished }

    package mutating func chunk(at offset: UInt64, maximum: Int) async throws(ParleyError) -> [UInt8] {
        guard offset >= pendingStart else {
            throw ParleyError(code: .internalError, message: "the stream's bytes before \(pendingStart) are gone")
        }
        let wanted = Int(offset - pendingStart) + maximum
        while pending.count < wanted, !finished {
            if buffered.isEmpty {
                do {
                    guard let piece = try await iterator.next() else {
                        finished = true
                        break
                    }
                    buffered = piece
                } catch {
                    throw ParleyError(code: .cancelled, message: "the stream failed", cause: error)
                }
            }
            let take = min(buffered.count, wanted - pending.count)
            hasher.update(data: buffered[..<take])
            pending.append(contentsOf: buffered[..<take])
            buffered.removeFirst(take)
        }
        let start = Int(offset - pendingStart)
        guard start < pending.count else { return [] }
        return Array(pending[start..<min(pending.count, start + maximum)])
    }

    package mutating func acknowledged(upTo offset: UInt64) {
        guard offset > pendingStart else { return }
        let drop = Int(min(offset - pendingStart, UInt64(pending.count)))
        pending.removeFirst(drop)
        pendingStart += UInt64(drop)
    }

    package mutating func digest() -> [UInt8] {
        Array(hasher.finalize())
    }
}

/// The partial file of a download: written in order, so its length is the offset to resume
/// from; hashed as it grows (a resumed one is hashed from its start first).
package struct FileChunkSink {
    package let path: String
    private let handle: FileHandle
    private var hasher = SHA256()
    package private(set) var size: UInt64 = 0

    package init(path: String, expectedSize: UInt64) throws(ParleyError) {
        self.path = path
        do {
            if !FileManager.default.fileExists(atPath: path) {
                guard
                    FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
                else {
                    throw ParleyError(code: .storageError, message: "cannot create \(path)")
                }
            }
            handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
            var length = try handle.seekToEnd()
            if length > expectedSize {
                // Not this transfer's bytes (or more than it has): start over.
                try handle.truncate(atOffset: 0)
                length = 0
            }
            try handle.seek(toOffset: 0)
            while size < length {
                guard let block = try handle.read(upToCount: 1 << 20), !block.isEmpty else { break }
                hasher.update(data: block)
                size += UInt64(block.count)
            }
            try handle.truncate(atOffset: size)
            _ = try handle.seekToEnd()
        } catch let error as ParleyError {
            throw error
        } catch {
            throw ParleyError(code: .storageError, message: "cannot open \(path)", cause: error)
        }
    }

    package var digest: [UInt8] { Array(hasher.finalize()) }

    package mutating func write(_ bytes: ByteBuffer) throws(ParleyError) {
        let data = Data(bytes.readableBytesView)
        do {
            try handle.write(contentsOf: data)
        } catch {
            throw ParleyError(code: .storageError, message: "cannot write \(path)", cause: error)
        }
        hasher.update(data: data)
        size += UInt64(data.count)
    }

    /// Flushes the bytes to disk and closes the file.
    package func finish() throws(ParleyError) {
        do {
            try handle.synchronize()
            try handle.close()
        } catch {
            throw ParleyError(code: .storageError, message: "cannot flush \(path)", cause: error)
        }
    }

    /// Deletes the partial file.
    package func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Gives the partial file its final name in `folder`: `name`, or `name (1)`... when taken.
    /// A hard link is made first (link(2) fails on an existing name), so an existing file is
    /// never replaced, even by one that appears meanwhile.
    package func publish(in folder: String, as name: String) throws(ParleyError) -> String {
        var taken: Set<String> = []
        while true {
            let chosen = FileName.unused(name) {
                taken.contains($0) || FileManager.default.fileExists(atPath: folder + "/" + $0)
            }
            let target = folder + "/" + chosen
            if link(path, target) != 0 {
                if errno == EEXIST {
                    taken.insert(chosen)
                    continue
                }
                let reason = String(cString: strerror(errno))
                throw ParleyError(code: .storageError, message: "cannot save \(target): \(reason)")
            }
            guard unlink(path) == 0 else {
                let reason = String(cString: strerror(errno))
                throw ParleyError(code: .storageError, message: "cannot remove \(path): \(reason)")
            }
            return target
        }
    }
}
