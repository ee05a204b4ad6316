import Foundation
import NIOCore
public import ParleyClient
public import ParleyCore
import ParleyWire

// File transfers of a node (docs/PROTOCOL.md sections 26 and 26.9). A file goes over a direct
// link to the recipient's node when one is open or can be dialled (the route rules of messages),
// through the server otherwise. A direct transfer whose link breaks picks up again from the
// receiver's offset when a link comes back within ``ParleyNode/directResumeWindow``; after that
// it falls back to the server, from the start there. Offers and statuses arrive as
// `fileOffered` and `transferStatus` events on both routes, and the same calls answer them.
extension ParleyNode {
    /// How a file was sent: the answer of `sendFile(at:to:name:id:progress:)` with a ``Recipient``.
    public struct FileSendResult: Sendable, Hashable {
        /// The transfer's ID.
        public var id: TransferID
        /// ``Route/direct``: the recipient's node has the whole file, verified; ``Route/server``:
        /// the server has it and offers it to the recipient.
        public var route: Route
    }

    /// How long a direct transfer whose link broke keeps trying to pick up again before it gives
    /// up (and falls back to the server, when there is one).
    public static let directResumeWindow = Duration.seconds(30)

    /// The logged-on server session, which carries file transfers.
    private func transferClient() throws(ParleyError) -> ParleyClient {
        let client = state.withLock { $0.server.loggedOnClient }
        guard let client else {
            throw ParleyError(
                code: .notConnected,
                message: "this transfer goes through the server, and this node is not logged on there")
        }
        return client
    }

    /// Sends a file to a user, directly or through the server, like `sendFile(at:to:name:id:progress:)`
    /// with ``Recipient/user(_:)``; returns its ID.
    @discardableResult
    public func sendFile(
        at path: String,
        to recipient: UserID,
        name: String? = nil,
        id: TransferID? = nil,
        progress: @escaping @Sendable (TransferProgress) -> Void = { _ in }
    ) async throws(ParleyError) -> TransferID {
        try await sendFile(at: path, to: Recipient.user(recipient), name: name, id: id, progress: progress).id
    }

    /// Sends the file at `path` to `recipient`: over a direct link to its node when one is open
    /// or can be dialled, which works with the server down; through the server otherwise (users
    /// only).
    ///
    /// Directly, the call returns once the recipient's node has the whole file with the right
    /// SHA-256: its application accepts it with ``receiveFile(_:into:progress:)`` (or declines
    /// it) after a `fileOffered` event. A link that breaks is dialled again and the transfer
    /// resumes from the receiver's offset; after ``directResumeWindow`` without a link, a user's
    /// file goes through the server from the start. Through the server, the call returns once
    /// the server has it (see ``/ParleyClient/ParleyClient/sendFile(at:to:name:id:progress:)``).
    /// Either way a `transferStatus` event tells how it ended.
    ///
    /// - Parameters:
    ///   - path: the file to send.
    ///   - recipient: a user, or a node in peer-to-peer mode (direct only).
    ///   - name: the name the recipient sees; the path's last component by default.
    ///   - id: the transfer's ID; by default one derived from the path, size, modification time
    ///     and recipient, so sending the same file again resumes.
    ///   - progress: called after each acknowledged chunk.
    /// - Throws: ``/ParleyCore/ParleyError`` with `transferRefused` when the recipient declined
    ///   it or did not decide within a minute, `cancelled` when either side cancelled it,
    ///   `notConnected` when no route exists, or the server's transfer errors.
    @discardableResult
    public func sendFile(
        at path: String,
        to recipient: Recipient,
        name: String? = nil,
        id: TransferID? = nil,
        progress: @escaping @Sendable (TransferProgress) -> Void = { _ in }
    ) async throws(ParleyError) -> FileSendResult {
        let recipientKey =
            switch recipient {
            case .user(let user): String(user.rawValue)
            case .node(let node): "node:\(node)"
            }
        let (size, derivedID) = try ParleyClient.fileIdentity(of: path, for: recipientKey)
        let id = id ?? derivedID
        let name = name ?? URL(fileURLWithPath: path).lastPathComponent
        try FileName.validate(name)
        var source = try FileChunkSource(path: path)
        let file = DirectFile(name: name, size: size, id: id, recipient: recipient)
        if try await sendDirectFirst(file, from: &source, progress: progress) {
            return FileSendResult(id: id, route: .direct)
        }
        try await transferClient().sendFile(at: path, to: file.user, name: name, id: id, progress: progress)
        return FileSendResult(id: id, route: .server)
    }

    /// Sends a stream of bytes of unknown length to `recipient`, named `name`: over a direct link
    /// to its node when one is open or can be dialled, through the server otherwise (users only),
    /// like `sendFile(at:to:name:id:progress:)`.
    ///
    /// Directly, the call returns once the recipient's node has all of it with the right SHA-256
    /// (the offer its application gets has ``/ParleyCore/FileOffer/isStream`` set and size 0; the
    /// length comes with the end). The chunks the receiver has not acknowledged are kept (at most
    /// 8 of 64 KiB), so a link that breaks is dialled again and the stream goes on from the
    /// receiver's offset within ``directResumeWindow``. A stream cannot be read twice: one whose
    /// direct transfer fails after its first bytes were read does not fall back to the server (the
    /// call throws); one for which no link could be opened at all goes through the server whole.
    ///
    /// - Parameters:
    ///   - bytes: the stream, in pieces of any size.
    ///   - name: the name the recipient sees.
    ///   - recipient: a user, or a node in peer-to-peer mode (direct only).
    ///   - id: the transfer's ID (random by default).
    ///   - progress: called after each acknowledged chunk (its total is nil until the end).
    /// - Throws: as `sendFile(at:to:name:id:progress:)`.
    @discardableResult
    public func sendStream<Bytes: AsyncSequence>(
        _ bytes: Bytes,
        named name: String,
        to recipient: Recipient,
        id: TransferID = .random(),
        progress: @escaping @Sendable (TransferProgress) -> Void = { _ in }
    ) async throws(ParleyError) -> FileSendResult where Bytes.Element == [UInt8] {
        try FileName.validate(name)
        var source = StreamChunkSource(iterator: bytes.makeAsyncIterator())
        let stream = DirectFile(name: name, size: nil, id: id, recipient: recipient)
        if try await sendDirectFirst(stream, from: &source, progress: progress) {
            return FileSendResult(id: id, route: .direct)
        }
        try await transferClient().sendStream(from: &source, named: name, to: stream.user, id: id, progress: progress)
        return FileSendResult(id: id, route: .server)
    }

    /// The direct attempt of a file or stream: true when the recipient's node has it; false when
    /// it should go through the server (a user's, with the server logged on, and the source able
    /// to start over there); throws otherwise, after telling the application how it ended.
    private func sendDirectFirst(
        _ file: DirectFile,
        from source: inout some ChunkSource,
        progress: @escaping @Sendable (TransferProgress) -> Void
    ) async throws(ParleyError) -> Bool {
        if await directTarget(for: file.recipient) != nil {
            do throws(ParleyError) {
                try await sendDirectly(file, from: &source, progress: progress)
                eventQueue.offer(.transferStatus(sentStatus(file.id, to: file.user, .completed, reason: "")))
                return true
            } catch {
                switch error.code {
                case .transferRefused:
                    eventQueue.offer(
                        .transferStatus(sentStatus(file.id, to: file.user, .declined, reason: error.message)))
                case .cancelled:
                    eventQueue.offer(
                        .transferStatus(sentStatus(file.id, to: file.user, .cancelled, reason: error.message)))
                default:
                    break
                }
                guard [ParleyError.Code.notConnected, .timedOut].contains(error.code), case .user = file.recipient,
                    state.withLock({ $0.server.loggedOn })
                else { throw error }
                guard source.canStartOver else {
                    throw ParleyError(
                        code: error.code,
                        message:
                            "the direct transfer of the stream failed after it had begun, and a stream cannot be read again: \(error.message)"
                    )
                }
                logger.debug(
                    "the direct transfer failed; sending through the server, from the start",
                    metadata: ["transfer.id": "\(file.id)", "error": "\(error)"])
            }
        }
        guard case .user = file.recipient else {
            throw ParleyError(code: .notConnected, message: "no direct link to the node for the file")
        }
        return false
    }

    private func sentStatus(_ id: TransferID, to recipient: UserID, _ outcome: TransferOutcome, reason: String)
        -> TransferStatus
    {
        TransferStatus(
            id: id, sender: ownUser ?? UserID(0), recipient: recipient, outcome: outcome, reason: reason, at: Date())
    }

    /// Saves a file offered to this node's user into `directory` and returns its path: a direct
    /// offer is accepted (the sender's node sends it, resuming from the partial file's length),
    /// one the server holds is fetched (see
    /// ``/ParleyClient/ParleyClient/receiveFile(_:into:progress:)``). Either way the file gets its
    /// final name only once its SHA-256 matched.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with `transferHashMismatch` (the partial file is
    ///   deleted), `cancelled` when the sender cancelled a direct transfer, `transferNotFound`
    ///   when the offer is gone, `storageError` when the folder cannot be written.
    @discardableResult
    public func receiveFile(
        _ offer: FileOffer,
        into directory: String,
        progress: @escaping @Sendable (TransferProgress) -> Void = { _ in }
    ) async throws(ParleyError) -> String {
        if let path = try await receiveDirectly(offer, into: directory, progress: progress) { return path }
        return try await transferClient().receiveFile(offer, into: directory, progress: progress)
    }

    /// Declines a file offered to this node's user.
    public func declineFile(_ offer: FileOffer, reason: String = "") async throws(ParleyError) {
        if await closeDirectOffer(offer, .declined, reason: reason) { return }
        try await transferClient().declineFile(offer, reason: reason)
    }

    /// Gives up a file offered to this node's user, also one partly received (a direct one's
    /// partial file is deleted; one from the server's in `directory`, if given).
    public func cancelFile(_ offer: FileOffer, partialIn directory: String? = nil, reason: String = "")
        async throws(ParleyError)
    {
        if await closeDirectOffer(offer, .cancelled, reason: reason) { return }
        try await transferClient().cancelFile(offer, partialIn: directory, reason: reason)
    }

    /// Gives up a transfer this node's user sent: a direct one under way stops and its receiver
    /// is told (PEER_TRANSFER_CLOSE), one through the server is deleted there.
    public func cancelTransfer(_ id: TransferID, reason: String = "") async throws(ParleyError) {
        let stop = DirectTransfers.Stop(byPeer: false, outcome: .cancelled, reason: reason)
        guard let link = directTransfers.stopSending(id, stop) else {
            try await transferClient().cancelTransfer(id, reason: reason)
            return
        }
        guard let link else { return }
        var close = Parley_V1_TransferClose()
        close.transferID = id.rawValue
        close.outcome = .cancelled
        close.reason = String(decoding: reason.utf8.prefix(256), as: UTF8.self)
        do throws(ParleyError) {
            _ = try await link.request(.peerTransferClose, close, payload: [], timeout: configuration.peerTimeout)
        } catch {
            // The receiver keeps its partial file; its application cancels it or a later send resumes.
            logger.debug("cannot tell the receiver", metadata: ["transfer.id": "\(id)", "error": "\(error)"])
        }
    }

    /// The transfers the server holds that this node's user sent or receives (see
    /// ``activeDirectTransfers()`` for those between nodes).
    public func transfers() async throws(ParleyError) -> [HeldTransfer] {
        try await transferClient().transfers()
    }

    /// A file or stream on its way over direct links, to or from this node.
    public struct DirectTransfer: Sendable, Hashable {
        /// Which way it goes.
        public enum Direction: String, Sendable, Hashable {
            /// This node sends it.
            case sending
            /// This node receives it.
            case receiving
        }

        /// The transfer's ID (unique per sender).
        public var id: TransferID
        public var direction: Direction
        /// The recipient of one this node sends; the sender (a user, 0 for a node without one)
        /// of one it receives.
        public var peer: Recipient
        /// The name the recipient sees.
        public var name: String
        /// Its length; nil for a stream, whose length comes with its end.
        public var size: UInt64?
        /// The bytes the receiver holds (acknowledged, for one this node sends).
        public var bytesDone: UInt64
        /// The receiving application accepted it (false: the offer waits for its decision).
        public var isAccepted: Bool

        public init(
            id: TransferID, direction: Direction, peer: Recipient, name: String, size: UInt64?, bytesDone: UInt64,
            isAccepted: Bool
        ) {
            self.id = id
            self.direction = direction
            self.peer = peer
            self.name = name
            self.size = size
            self.bytesDone = bytesDone
            self.isAccepted = isAccepted
        }
    }

    /// The direct transfers under way in this node, both ways, by ID: each lasts from its
    /// PEER_TRANSFER_START to its end (completed, declined, cancelled or failed), also while its
    /// link is down and the sender tries again. What a stopped process left behind is a partial
    /// file in the receive folder, which a new send of the same file resumes.
    public func activeDirectTransfers() -> [DirectTransfer] {
        directTransfers.list()
    }

    // MARK: Sending directly

    /// A file or stream on its way over a direct link.
    private struct DirectFile {
        var name: String
        /// nil: a stream, whose length is known at its end.
        var size: UInt64?
        var id: TransferID
        var recipient: Recipient

        /// The recipient user (0 for a node in peer-to-peer mode).
        var user: UserID {
            if case .user(let user) = recipient { return user }
            return UserID(0)
        }
    }

    /// Sends `file` over direct links until the receiver has it, dialling again after a broken
    /// link for at most ``directResumeWindow``.
    private func sendDirectly(
        _ file: DirectFile, from source: inout some ChunkSource,
        progress: @escaping @Sendable (TransferProgress) -> Void
    ) async throws(ParleyError) {
        let outbound = DirectTransfers.Outbound(name: file.name, recipient: file.recipient, size: file.size)
        guard directTransfers.beginSending(file.id, outbound) else {
            throw ParleyError(code: .invalidRequest, message: "transfer \(file.id) is being sent already")
        }
        defer { directTransfers.endSending(file.id) }
        var start = Parley_V1_TransferStart()
        start.transferID = file.id.rawValue
        start.name = file.name
        start.size = file.size ?? 0
        start.stream = file.size == nil
        var user: UserID?
        if case .user(let recipientUser) = file.recipient {
            user = recipientUser
            start.recipient = recipientUser.rawValue
        }
        let deadline = ContinuousClock.now + Self.directResumeWindow
        var first = true
        var linked = false
        while true {
            do throws(ParleyError) {
                try checkStop(file.id)
                let link = try await transferLink(to: file.recipient, user: user, first: first)
                linked = true
                directTransfers.sending(file.id, over: link)
                try await sendRun(start, from: &source, over: link, progress: progress)
                return
            } catch {
                // A stop explains the failure better than what it caused (a closed request).
                try checkStop(file.id)
                let (stopping, serverUp) = state.withLock { ($0.stopping, $0.server.loggedOn) }
                if !linked, user != nil, serverUp {
                    // No link at all on the first try: a user's file takes the server at once, as
                    // a message would; the resume window is for links that broke.
                    throw ParleyError(
                        code: .notConnected, message: "no direct link to the recipient's node: \(error.message)")
                }
                let resumable = [ParleyError.Code.notConnected, .timedOut, .transferOffsetMismatch].contains(error.code)
                guard resumable, !stopping, ContinuousClock.now < deadline else { throw error }
                logger.debug(
                    "resuming a direct transfer", metadata: ["transfer.id": "\(file.id)", "error": "\(error)"])
            }
            first = false
            do {
                // Gives the link a moment to come back (or the peer's redial to arrive).
                try await Task.sleep(for: .milliseconds(250))
            } catch {
                throw ParleyError(code: .cancelled, message: "the transfer was cancelled")
            }
        }
    }

    /// A ready link to the recipient's node: the first try for a user that the server could also
    /// take does not wait for a peer that failed lately.
    private func transferLink(to recipient: Recipient, user: UserID?, first: Bool) async throws(ParleyError)
        -> DirectLink
    {
        guard let target = await directTarget(for: recipient) else {
            throw ParleyError(code: .notConnected, message: "no direct route to the recipient's node")
        }
        let purpose: DialPurpose =
            first && state.withLock({ $0.server.loggedOn }) ? .sendWithAlternative : .sendWithoutAlternative
        let link = try await self.link(to: target.node, addresses: target.addresses, purpose: purpose)
        if let user, link.hello?.userID != user {
            throw ParleyError(code: .notConnected, message: "node \(target.node) does not speak for user \(user)")
        }
        return link
    }

    /// Fails when this transfer was stopped (by either side) or its task cancelled.
    private func checkStop(_ id: TransferID) throws(ParleyError) {
        if let stop = directTransfers.stop(of: id) {
            let reason = stop.reason.isEmpty ? "" : ": \(stop.reason)"
            guard stop.byPeer else {
                throw ParleyError(code: .cancelled, message: "the transfer was cancelled\(reason)")
            }
            throw ParleyError(
                code: stop.outcome == .declined ? .transferRefused : .cancelled,
                message: "the recipient \(stop.outcome.rawValue) the transfer\(reason)")
        }
        if Task.isCancelled { throw ParleyError(code: .cancelled, message: "the transfer was cancelled") }
    }

    /// One run over one link: PEER_TRANSFER_START (the receiver's offset), the chunks from there
    /// with ``DirectTransfers/window`` in flight, PEER_TRANSFER_END.
    private func sendRun(
        _ start: Parley_V1_TransferStart,
        from source: inout some ChunkSource,
        over link: DirectLink,
        progress: @Sendable (TransferProgress) -> Void
    ) async throws(ParleyError) {
        let id = TransferID(start.transferID)
        let total: UInt64? = start.stream ? nil : start.size
        let answer: Parley_V1_TransferState = try await link.request(
            .peerTransferStart, start, payload: [], timeout: DirectTransfers.decisionTimeout + configuration.peerTimeout
        ).decodeMeta()
        if answer.phase == .closed {
            guard answer.outcome == .completed else {
                throw ParleyError(code: .transferNotFound, message: "transfer \(id) was closed already")
            }
            progress(ParleyClient.progress(id, answer.offset, answer.offset, answer.offset, .now))
            return
        }
        if let total, answer.offset > total {
            throw ParleyError(
                code: .invalidRequest, message: "the receiver holds \(answer.offset) bytes of a \(total)-byte file")
        }
        // A stream forgets what the receiver holds; its later bytes stay until acknowledged.
        source.acknowledged(upTo: answer.offset)
        directTransfers.acknowledged(id, upTo: answer.offset)
        let started = ContinuousClock.now
        let chunkSize = UInt64(min(max(answer.chunkSize, 1), UInt32(DirectTransfers.chunkSize)))
        var next = answer.offset
        var ended = false
        var inFlight: [EventLoopFuture<Frame>] = []
        do throws(ParleyError) {
            while !ended || !inFlight.isEmpty {
                while !ended, inFlight.count < DirectTransfers.window {
                    try checkStop(id)
                    let maximum = total.map { min(chunkSize, $0 - next) } ?? chunkSize
                    let bytes = maximum == 0 ? [] : try await source.chunk(at: next, maximum: Int(maximum))
                    guard !bytes.isEmpty else {
                        if let total, next < total {
                            throw ParleyError(code: .storageError, message: "the file got shorter while it was sent")
                        }
                        ended = true
                        break
                    }
                    var meta = Parley_V1_TransferChunk()
                    meta.transferID = id.rawValue
                    meta.offset = next
                    inFlight.append(
                        link.send(
                            .peerTransferChunk, meta, payload: ByteBuffer(bytes: bytes),
                            timeout: configuration.peerTimeout))
                    next += UInt64(bytes.count)
                }
                guard !inFlight.isEmpty else { break }
                let state: Parley_V1_TransferState = try await Self.answer(to: inFlight.removeFirst()).get()
                    .decodeMeta()
                source.acknowledged(upTo: state.offset)
                directTransfers.acknowledged(id, upTo: state.offset)
                progress(ParleyClient.progress(id, state.offset, total, answer.offset, started))
            }
        } catch {
            // The chunks already sent are answered or failed before this run ends, so nothing of it
            // is still on its way when the next run starts.
            for pending in inFlight { _ = await Self.answer(to: pending) }
            throw error
        }
        var end = Parley_V1_TransferEnd()
        end.transferID = id.rawValue
        end.size = next
        end.sha256 = Data(try await source.digest())
        // The receiver flushes and renames before it answers.
        _ = try await link.request(
            .peerTransferEnd, end, payload: [], timeout: configuration.peerTimeout + .seconds(Int64(next >> 26)))
        progress(ParleyClient.progress(id, next, next, answer.offset, started))
    }

    private static func answer(to request: EventLoopFuture<Frame>) async -> Result<Frame, ParleyError> {
        do {
            return .success(try await request.get())
        } catch let error as ParleyError {
            return .failure(error)
        } catch {
            return .failure(ParleyError(code: .internalError, message: "the transfer failed", cause: error))
        }
    }
}
