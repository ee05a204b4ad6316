import Foundation
import NIOCore
import ParleyCore
import ParleyServerStore
import ParleyWire

/// File and stream transfer (docs/PROTOCOL.md section 26): TRANSFER_START, TRANSFER_CHUNK,
/// TRANSFER_END, TRANSFER_READ, TRANSFER_CLOSE, LIST_TRANSFERS, and this connection's
/// TRANSFER_OFFER and TRANSFER_STATUS events.
///
/// Store-and-forward: the sender's chunks go to a spool file (``TransferSpool``) on the blocking
/// pool, one after the other (a chunk is handled as a session-changing request, so a connection's
/// chunks stay in order); the row in the store says how far the transfer has come. Reads run in
/// parallel, as directory queries do. No file is ever held in memory: one chunk per request.
final class TransfersFamily: RequestFamily, Sendable {
    private static let types: [FrameType] = [
        .transferStart, .transferChunk, .transferEnd, .transferRead, .transferClose, .listTransfers,
    ]

    var requestTypes: [FrameType] { Self.types }

    func handle(_ frame: Frame, in session: SessionContext) throws(ParleyError) {
        let user = try session.requireUser()
        switch frame.type {
        case .transferStart:
            try start(frame, from: user, in: session)
        case .transferChunk:
            let chunk: Parley_V1_TransferChunk = try frame.decodeMeta()
            let payload = frame.payload
            guard payload.readableBytes > 0, payload.readableBytes <= session.server.configuration.chunkSize
            else {
                throw ParleyError(
                    code: .invalidRequest,
                    message:
                        "a chunk carries 1 to \(session.server.configuration.chunkSize) bytes, not \(payload.readableBytes)"
                )
            }
            session.serialized(frame) { server throws(ParleyError) in
                try server.appendChunk(payload, at: chunk.offset, of: TransferID(chunk.transferID), sender: user)
            }
        case .transferEnd:
            let end: Parley_V1_TransferEnd = try frame.decodeMeta()
            guard end.sha256.count == 32 else {
                throw ParleyError(code: .invalidRequest, message: "sha256 must be 32 bytes, not \(end.sha256.count)")
            }
            session.serialized(frame) { server throws(ParleyError) in
                try server.endUpload(
                    of: TransferID(end.transferID), sender: user, size: end.size, sha256: Array(end.sha256))
            }
        case .transferRead:
            let read: Parley_V1_TransferRead = try frame.decodeMeta()
            session.requestStarted(query: true)
            let server = session.server
            session.blocking(
                { () throws(ParleyError) in try server.readChunk(read, recipient: user) },
                then: { result in
                    switch result {
                    case .success(let (meta, bytes)):
                        session.respond(to: frame, with: meta, payload: bytes)
                    case .failure(let error):
                        session.respond(to: frame, with: ServerConnectionHandler.parleyError(error))
                    }
                    session.requestAnswered(query: true)
                })
        case .transferClose:
            let close: Parley_V1_TransferClose = try frame.decodeMeta()
            session.query(frame) { server throws(ParleyError) in
                try server.closeTransfer(close, by: user)
                return Parley_V1_Empty()
            }
        case .listTransfers:
            session.query(frame) { server throws(ParleyError) in
                var list = Parley_V1_TransferList()
                list.transfers = try server.store.heldTransfers(involving: user).map { server.transferInfo($0) }
                return list
            }
        default:
            throw ParleyError(code: .unknownRequest, message: "unknown frame type \(frame.type)")
        }
    }

    func sessionStarted(in session: SessionContext) {
        guard let user = session.identity.user else { return }
        session.connection.pushTransferNews(of: user)
    }

    /// TRANSFER_START: checks the request, asks the application when it vetoes transfers (not
    /// for a transfer the server holds already: that is a resume), records it and answers.
    private func start(_ frame: Frame, from user: UserID, in session: SessionContext) throws(ParleyError) {
        let request: Parley_V1_TransferStart = try frame.decodeMeta()
        guard request.transferID != 0 else {
            throw ParleyError(code: .invalidRequest, message: "transfer_id must not be 0")
        }
        try FileName.validate(request.name)
        let transfer = StoredTransfer(
            sender: user,
            id: TransferID(request.transferID),
            recipient: UserID(request.recipient),
            name: request.name,
            declaredSize: request.stream ? 0 : request.size,
            isStream: request.stream,
            createdAt: Date()
        )
        let server = session.server
        guard server.hooks.vetoesTransfers else {
            session.query(frame) { server throws(ParleyError) in try server.startTransfer(transfer) }
            return
        }
        session.requestStarted(query: true)
        let finish: (Result<Parley_V1_TransferState, any Error>) -> Void = { result in
            switch result {
            case .success(let state): session.respond(to: frame, with: state)
            case .failure(let error): session.respond(to: frame, with: ServerConnectionHandler.parleyError(error))
            }
            session.requestAnswered(query: true)
        }
        let record = {
            session.blocking({ () throws(ParleyError) in try server.startTransfer(transfer) }, then: finish)
        }
        let held: @Sendable () throws(ParleyError) -> Bool = { () throws(ParleyError) in
            try server.store.transfer(sender: user, id: transfer.id) != nil
        }
        session.blocking(held) { result in
            switch result {
            case .failure(let error):
                finish(.failure(error))
            case .success(true):
                record()
            case .success(false):
                guard let handle = session.handle else { return }
                let promise = handle.eventLoop.makePromise(of: Bool.self)
                let asked = TransferRequest(
                    id: transfer.id, sender: user, recipient: transfer.recipient, name: transfer.name,
                    size: transfer.isStream ? nil : transfer.declaredSize)
                server.hooks.decide(
                    late: false,
                    unavailable: false,
                    { application, server in await application.shouldAcceptTransfer(asked, server: server) },
                    completion: { promise.succeed($0) }
                )
                promise.futureResult.assumeIsolated().whenSuccess { allowed in
                    guard allowed else {
                        finish(
                            .failure(
                                ParleyError(
                                    code: .transferRefused,
                                    message:
                                        "the server does not take \(transfer.name.debugDescription) for user \(transfer.recipient)"
                                )))
                        return
                    }
                    record()
                }
            }
        }
    }
}

// MARK: - The work, off the event loops

extension ServerContext {
    var spool: TransferSpool { TransferSpool(dataDirectory: configuration.dataDirectory) }

    func transferState(_ transfer: StoredTransfer, offset: UInt64) -> Parley_V1_TransferState {
        var state = Parley_V1_TransferState()
        state.transferID = transfer.id.rawValue
        state.offset = offset
        state.chunkSize = UInt32(clamping: configuration.chunkSize)
        state.phase = Parley_V1_TransferPhase(rawValue: transfer.phase.rawValue) ?? .uploading
        if let outcome = transfer.outcome { state.outcome = Parley_V1_TransferOutcome(outcome) }
        return state
    }

    func transferInfo(_ transfer: StoredTransfer) -> Parley_V1_TransferInfo {
        var info = Parley_V1_TransferInfo()
        info.transferID = transfer.id.rawValue
        info.sender = transfer.sender.rawValue
        info.recipient = transfer.recipient.rawValue
        info.name = transfer.name
        info.size = transfer.size ?? transfer.declaredSize
        info.sha256 = Data(transfer.sha256 ?? [])
        info.phase = Parley_V1_TransferPhase(rawValue: transfer.phase.rawValue) ?? .uploading
        info.offset = transfer.phase == .uploading ? spool.size(sender: transfer.sender, id: transfer.id) : info.size
        info.createdAtMs = transfer.createdAt.millisecondsSince1970
        info.expiresAtMs =
            ((transfer.readyAt ?? transfer.createdAt) + configuration.transferRetention.timeInterval)
            .millisecondsSince1970
        info.stream = transfer.isStream
        return info
    }

    /// Records a transfer (or finds the one being resumed) and says where its upload stands.
    func startTransfer(_ transfer: StoredTransfer) throws(ParleyError) -> Parley_V1_TransferState {
        let (held, _) = try store.startTransfer(
            transfer, maximumFileSize: configuration.maximumFileSize, quota: configuration.transferQuota)
        let offset =
            held.phase == .uploading ? spool.size(sender: held.sender, id: held.id) : held.size ?? 0
        return transferState(held, offset: offset)
    }

    private func uploading(_ id: TransferID, of sender: UserID) throws(ParleyError) -> StoredTransfer {
        guard let held = try store.transfer(sender: sender, id: id), held.phase != .closed else {
            throw ParleyError(code: .transferNotFound, message: "user \(sender) has no transfer \(id) on this server")
        }
        guard held.phase == .uploading else {
            throw ParleyError(code: .transferNotReady, message: "transfer \(id) is uploaded already")
        }
        return held
    }

    /// TRANSFER_CHUNK: writes the bytes at `offset` of the spool file.
    func appendChunk(
        _ bytes: ByteBuffer, at offset: UInt64, of id: TransferID, sender: UserID
    ) throws(ParleyError) -> Parley_V1_TransferState {
        let heldTransfer = try uploading(id, of: sender)
        let end = offset + UInt64(bytes.readableBytes)
        if heldTransfer.isStream {
            guard end <= configuration.maximumFileSize else {
                // It cannot end well: what is held goes now.
                try store.forgetTransfer(sender: sender, id: id)
                spool.delete(sender: sender, id: id)
                throw ParleyError(
                    code: .fileTooLarge,
                    message:
                        "the stream grows past \(configuration.maximumFileSize) bytes, the most this server takes; it was deleted"
                )
            }
        } else if end > heldTransfer.declaredSize {
            throw ParleyError(
                code: .transferOffsetMismatch,
                message:
                    "a chunk ending at \(end) goes past the declared size \(heldTransfer.declaredSize) of transfer \(id)"
            )
        }
        let newOffset = try spool.append(bytes, at: offset, sender: sender, id: id)
        return transferState(heldTransfer, offset: newOffset)
    }

    /// TRANSFER_END: checks the length and hash of what is held, flushes it and offers it.
    func endUpload(
        of id: TransferID, sender: UserID, size: UInt64, sha256: [UInt8]
    ) throws(ParleyError) -> Parley_V1_TransferState {
        if let held = try store.transfer(sender: sender, id: id), held.phase == .ready {
            return transferState(held, offset: held.size ?? 0)
        }
        var held = try uploading(id, of: sender)
        let (heldSize, digest) = try spool.digest(sender: sender, id: id)
        guard heldSize == size, held.isStream || size == held.declaredSize else {
            throw ParleyError(
                code: .transferOffsetMismatch,
                message: "transfer \(id): the server holds \(heldSize) bytes; the end says \(size)")
        }
        if held.isStream {
            let others = try store.heldTransferBytes(for: held.recipient)
            var limit: ParleyError?
            if size > configuration.maximumFileSize {
                limit = ParleyError(
                    code: .fileTooLarge,
                    message: "the stream has \(size) bytes; this server takes at most \(configuration.maximumFileSize)")
            } else if others + size > configuration.transferQuota {
                limit = ParleyError(
                    code: .transferQuotaExceeded,
                    message:
                        "user \(held.recipient) has \(others) bytes waiting; \(size) more would exceed the quota of \(configuration.transferQuota)"
                )
            }
            if let limit {
                try store.forgetTransfer(sender: sender, id: id)
                spool.delete(sender: sender, id: id)
                throw limit
            }
        }
        guard digest == sha256 else {
            spool.discard(sender: sender, id: id)
            throw ParleyError(
                code: .transferHashMismatch,
                message: "the SHA-256 of the \(size) bytes of transfer \(id) is not the one given; they were discarded")
        }
        try spool.sync(sender: sender, id: id)
        let now = Date()
        try store.markTransferReady(sender: sender, id: id, size: size, sha256: digest, at: now)
        held.phase = .ready
        held.size = size
        held.sha256 = digest
        held.readyAt = now
        let info = transferInfo(held)
        registry.session(for: held.recipient)?.execute { $0.offerTransfer(info) }
        return transferState(held, offset: size)
    }

    /// TRANSFER_READ: up to one chunk of a ready transfer for its recipient.
    func readChunk(
        _ request: Parley_V1_TransferRead, recipient: UserID
    ) throws(ParleyError) -> (Parley_V1_TransferChunk, ByteBuffer) {
        let id = TransferID(request.transferID)
        let sender = UserID(request.sender)
        guard let held = try store.transfer(sender: sender, id: id), held.recipient == recipient,
            held.phase != .closed
        else {
            throw ParleyError(code: .transferNotFound, message: "no transfer \(id) from user \(sender) for you")
        }
        guard held.phase == .ready, let size = held.size else {
            throw ParleyError(code: .transferNotReady, message: "transfer \(id) is still being uploaded")
        }
        let chunk = UInt64(configuration.chunkSize)
        let wanted = request.length == 0 ? chunk : min(UInt64(request.length), chunk)
        let length = request.offset < size ? min(wanted, size - request.offset) : 0
        var meta = Parley_V1_TransferChunk()
        meta.transferID = id.rawValue
        meta.offset = request.offset
        meta.sender = sender.rawValue
        guard length > 0 else { return (meta, ByteBuffer()) }
        let bytes = try spool.readChunk(sender: sender, id: id, offset: request.offset, length: Int(length))
        guard UInt64(bytes.readableBytes) == length else {
            throw ParleyError(
                code: .storageError, message: "the spool file of transfer \(id) is shorter than its recorded size")
        }
        return (meta, bytes)
    }

    /// TRANSFER_CLOSE: the sender cancels, or the recipient completes, declines, cancels or
    /// reports a failed hash.
    func closeTransfer(_ request: Parley_V1_TransferClose, by user: UserID) throws(ParleyError) {
        let sender = request.sender == 0 ? user : UserID(request.sender)
        let id = TransferID(request.transferID)
        guard let outcome = request.outcome.outcome else {
            throw ParleyError(code: .invalidRequest, message: "TRANSFER_CLOSE needs an outcome")
        }
        guard let held = try store.transfer(sender: sender, id: id), held.phase != .closed,
            held.sender == user || held.recipient == user
        else {
            throw ParleyError(code: .transferNotFound, message: "no transfer \(id) of user \(sender) is yours to close")
        }
        if held.recipient == user {
            guard [.completed, .declined, .cancelled, .failed].contains(outcome) else {
                throw ParleyError(code: .invalidRequest, message: "a recipient cannot close a transfer as \(outcome)")
            }
            guard held.phase == .ready || outcome == .declined else {
                throw ParleyError(code: .transferNotReady, message: "transfer \(id) is still being uploaded")
            }
        } else if outcome != .cancelled {
            throw ParleyError(code: .invalidRequest, message: "a sender can only cancel its transfer")
        }
        try finishTransfer(held, outcome: outcome, reason: String(request.reason.prefix(256)), by: user)
    }

    /// Ends a held transfer: deletes its bytes, tells its sender (now or at its next logon) and,
    /// when it was offered, its recipient if online.
    func finishTransfer(
        _ held: StoredTransfer, outcome: TransferOutcome, reason: String, by user: UserID?
    ) throws(ParleyError) {
        let now = Date()
        guard
            try store.closeTransfer(sender: held.sender, id: held.id, outcome: outcome, reason: reason, at: now)
                != nil
        else { return }
        spool.delete(sender: held.sender, id: held.id)
        let sender = held.sender
        registry.session(for: sender)?.execute { $0.pushClosedTransfers(of: sender) }
        if held.recipient != user, held.phase == .ready {
            let status = Parley_V1_TransferStatusEvent(
                TransferStatus(
                    id: held.id, sender: held.sender, recipient: held.recipient, outcome: outcome, reason: reason,
                    at: now))
            let recipient = held.recipient
            registry.session(for: recipient)?.execute { $0.pushTransferStatus(status, to: recipient) }
        }
    }

    /// Deletes what was not fetched within the retention period; the senders are told EXPIRED.
    func sweepTransfers() {
        do {
            let expired = try store.expiredTransfers(before: Date() - configuration.transferRetention.timeInterval)
            for transfer in expired {
                try finishTransfer(
                    transfer, outcome: .expired, reason: "not fetched within the server's retention period", by: nil)
            }
        } catch {
            logger.warning("cannot sweep expired transfers", metadata: ["error": "\(error)"])
        }
    }
}

// MARK: - Pushes on the connection's loop

extension ServerConnectionHandler {
    /// Pushes TRANSFER_OFFER if this session is the recipient's and takes transfer events.
    func offerTransfer(_ info: Parley_V1_TransferInfo) {
        guard negotiatedFiles, machine.identity.user == UserID(info.recipient), !machine.isClosing else { return }
        write(Frame(type: .transferOffer, requestID: 0, message: info))
    }

    /// Pushes TRANSFER_STATUS if this session is `user`'s and takes transfer events.
    func pushTransferStatus(_ event: Parley_V1_TransferStatusEvent, to user: UserID) {
        guard negotiatedFiles, machine.identity.user == user, !machine.isClosing else { return }
        write(Frame(type: .transferStatus, requestID: 0, message: event))
    }

    /// Takes `user`'s closed transfers out of the store and tells it how they ended.
    func pushClosedTransfers(of user: UserID) {
        guard negotiatedFiles, machine.identity.user == user, let context else { return }
        let server = self.server
        server.blocking(on: context.eventLoop) { () throws(ParleyError) in
            try server.store.takeClosedTransfers(of: user)
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            switch result {
            case .success(let closed):
                for transfer in closed {
                    guard let outcome = transfer.outcome else { continue }
                    let status = TransferStatus(
                        id: transfer.id, sender: transfer.sender, recipient: transfer.recipient, outcome: outcome,
                        reason: transfer.reason, at: transfer.closedAt ?? Date())
                    write(Frame(type: .transferStatus, requestID: 0, message: Parley_V1_TransferStatusEvent(status)))
                }
            case .failure(let error):
                logger.warning("cannot take the closed transfers", metadata: ["error": "\(error)"])
            }
        }
    }

    /// After logon: the transfers ready for `user` (TRANSFER_OFFER each) and how its own
    /// transfers ended meanwhile (TRANSFER_STATUS each).
    func pushTransferNews(of user: UserID) {
        guard negotiatedFiles, machine.identity.user == user, let context else { return }
        let server = self.server
        server.blocking(on: context.eventLoop) { () throws(ParleyError) in
            try server.store.readyTransfers(for: user).map { server.transferInfo($0) }
        }
        .assumeIsolated()
        .whenComplete { [self] result in
            switch result {
            case .success(let offers):
                for info in offers { offerTransfer(info) }
            case .failure(let error):
                logger.warning("cannot read the transfers offered", metadata: ["error": "\(error)"])
            }
            pushClosedTransfers(of: user)
        }
    }
}
