import Foundation
import NIOCore
import ParleyClient
import ParleyCore
import ParleyWire

// Direct file transfers between nodes (docs/PROTOCOL.md section 26.9): the frames a node
// answers as the receiving side, in the server's place of sections 26.4-26.5. The receiving
// application decides with the same `fileOffered` event and the same calls as for a file the
// server holds; the bytes go into the same `.NAME.SENDER-ID.parley-part` file, so a transfer cut
// by a broken link or a restart resumes from that file's length.

extension ParleyNode {
    /// PEER_TRANSFER_START, _CHUNK, _END and _CLOSE from a peer.
    func handleTransfer(_ frame: Frame, on link: DirectLink) {
        guard let hello = link.hello else {
            link.write(
                .error(ParleyError(code: .handshakeRequired, message: "NODE_HELLO first"), requestID: frame.requestID))
            return
        }
        let sender = hello.userID ?? UserID(0)
        do throws(ParleyError) {
            switch frame.type {
            case .peerTransferStart: try transferStarted(frame, by: sender, on: link)
            case .peerTransferChunk: try chunkArrived(frame, from: sender, on: link)
            case .peerTransferEnd: try transferEnded(frame, from: sender, on: link)
            default: try transferClosed(frame, by: sender, on: link)
            }
        } catch {
            link.write(.error(error, requestID: frame.requestID))
        }
    }

    /// A `TransferState` answer to `type` with the receiver's `offset`.
    static func transferState(
        _ type: FrameType, requestID: UInt32, id: TransferID, offset: UInt64, outcome: TransferOutcome? = nil
    ) -> Frame {
        var state = Parley_V1_TransferState()
        state.transferID = id.rawValue
        state.offset = offset
        state.chunkSize = UInt32(DirectTransfers.chunkSize)
        if let outcome {
            state.phase = .closed
            state.outcome = Parley_V1_TransferOutcome(outcome)
        }
        return Frame(type: type.response, requestID: requestID, message: state)
    }

    private enum StartDecision {
        case resume(UInt64)
        case waiting
        case offer(FileOffer)
        case mismatch
    }

    private func transferStarted(_ frame: Frame, by sender: UserID, on link: DirectLink) throws(ParleyError) {
        let meta: Parley_V1_TransferStart = try frame.decodeMeta()
        guard meta.transferID != 0 else {
            throw ParleyError(code: .invalidRequest, message: "transfer_id 0 names no transfer")
        }
        guard meta.recipient == ownUser?.rawValue ?? 0 else {
            throw ParleyError(
                code: .userNotFound, message: "user \(meta.recipient) is not the user of node \(nodeID)")
        }
        try FileName.validate(meta.name)
        let id = TransferID(meta.transferID)
        let key = DirectTransfers.Key(sender: sender, id: id)
        if directTransfers.hasCompleted(key) {
            link.write(
                Self.transferState(
                    .peerTransferStart, requestID: frame.requestID, id: id, offset: meta.size, outcome: .completed))
            return
        }
        let decision = directTransfers.withInbound { inbound -> StartDecision in
            if var entry = inbound[key] {
                guard entry.offer.name == meta.name, entry.offer.isStream == meta.stream,
                    entry.offer.isStream || entry.offer.size == meta.size
                else { return .mismatch }
                entry.link = link
                if let accepted = entry.accepted {
                    inbound[key] = entry
                    return .resume(accepted.sink.size)
                }
                entry.waitingStart = frame.requestID
                inbound[key] = entry
                return .waiting
            }
            let now = Date()
            let offer = FileOffer(
                id: id, sender: sender, recipient: UserID(meta.recipient), name: meta.name,
                size: meta.stream ? 0 : meta.size, sha256: [], isStream: meta.stream, createdAt: now,
                expiresAt: now.addingTimeInterval(DirectTransfers.decisionTimeout.timeInterval))
            inbound[key] = DirectTransfers.Inbound(offer: offer, link: link, waitingStart: frame.requestID)
            return .offer(offer)
        }
        switch decision {
        case .mismatch:
            throw ParleyError(
                code: .invalidRequest, message: "transfer \(id) was started with another name, size or kind")
        case .resume(let offset):
            link.write(Self.transferState(.peerTransferStart, requestID: frame.requestID, id: id, offset: offset))
        case .waiting:
            awaitDecision(on: key, requestID: frame.requestID, link: link)
        case .offer(let offer):
            guard eventQueue.offer(.fileOffered(offer)) else {
                directTransfers.withInbound { _ = $0.removeValue(forKey: key) }
                throw ParleyError(
                    code: .transferRefused, message: "the receiving application is not reading its events")
            }
            awaitDecision(on: key, requestID: frame.requestID, link: link)
        }
    }

    /// Refuses the START `requestID` if the application has not decided within
    /// ``DirectTransfers/decisionTimeout``.
    private func awaitDecision(on key: DirectTransfers.Key, requestID: UInt32, link: DirectLink) {
        let timeout = DirectTransfers.decisionTimeout
        _ = link.channel.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) { [self] in
            let expired = directTransfers.withInbound { inbound -> FileOffer? in
                guard let entry = inbound[key], entry.accepted == nil, entry.waitingStart == requestID,
                    entry.link === link
                else { return nil }
                inbound[key] = nil
                return entry.offer
            }
            guard let expired else { return }
            let reason = "the receiving application did not accept the file within \(timeout)"
            link.write(.error(ParleyError(code: .transferRefused, message: reason), requestID: requestID))
            eventQueue.offer(.transferStatus(Self.status(of: expired, .cancelled, reason: reason)))
        }
    }

    static func status(of offer: FileOffer, _ outcome: TransferOutcome, reason: String) -> TransferStatus {
        TransferStatus(
            id: offer.id, sender: offer.sender, recipient: offer.recipient, outcome: outcome, reason: reason,
            at: Date())
    }

    private func chunkArrived(_ frame: Frame, from sender: UserID, on link: DirectLink) throws(ParleyError) {
        let meta: Parley_V1_TransferChunk = try frame.decodeMeta()
        let id = TransferID(meta.transferID)
        let key = DirectTransfers.Key(sender: sender, id: id)
        let count = UInt64(frame.payload.readableBytes)
        // The START's answer promised at most `chunk_size` bytes per chunk (section 26.9).
        guard count <= DirectTransfers.chunkSize else {
            throw ParleyError(
                code: .invalidRequest,
                message: "a chunk carries at most \(DirectTransfers.chunkSize) bytes, not \(count)")
        }
        let written = directTransfers.withInbound { inbound -> Result<TransferProgressReport, ParleyError> in
            guard var entry = inbound[key] else {
                return .failure(ParleyError(code: .transferNotFound, message: "no transfer \(id) from user \(sender)"))
            }
            guard var accepted = entry.accepted else {
                return .failure(ParleyError(code: .transferNotReady, message: "transfer \(id) is not accepted yet"))
            }
            guard meta.offset == accepted.sink.size else {
                return .failure(
                    ParleyError(
                        code: .transferOffsetMismatch,
                        message: "the chunk starts at \(meta.offset); the receiver holds \(accepted.sink.size) bytes"))
            }
            guard count > 0, entry.offer.isStream || accepted.sink.size + count <= entry.offer.size else {
                return .failure(
                    ParleyError(
                        code: .invalidRequest,
                        message:
                            "a chunk of \(count) bytes at \(meta.offset) does not fit a file of \(entry.offer.size)"))
            }
            do throws(ParleyError) {
                try accepted.sink.write(frame.payload)
            } catch {
                return .failure(error)
            }
            entry.accepted = accepted
            inbound[key] = entry
            return .success(
                TransferProgressReport(
                    callback: accepted.progress,
                    progress: ParleyClient.progress(
                        id, accepted.sink.size, entry.offer.isStream ? nil : entry.offer.size, accepted.resumedFrom,
                        accepted.started)))
        }
        let report = try written.get()
        link.write(
            Self.transferState(
                .peerTransferChunk, requestID: frame.requestID, id: id, offset: report.progress.bytesDone)
        )
        report.callback(report.progress)
    }

    private func transferEnded(_ frame: Frame, from sender: UserID, on link: DirectLink) throws(ParleyError) {
        let meta: Parley_V1_TransferEnd = try frame.decodeMeta()
        let id = TransferID(meta.transferID)
        let key = DirectTransfers.Key(sender: sender, id: id)
        let taken = directTransfers.withInbound {
            inbound -> Result<(FileOffer, DirectTransfers.Accepted), ParleyError> in
            guard let entry = inbound[key] else {
                return .failure(ParleyError(code: .transferNotFound, message: "no transfer \(id) from user \(sender)"))
            }
            guard let accepted = entry.accepted else {
                return .failure(ParleyError(code: .transferNotReady, message: "transfer \(id) is not accepted yet"))
            }
            guard meta.size == accepted.sink.size, entry.offer.isStream || meta.size == entry.offer.size else {
                return .failure(
                    ParleyError(
                        code: .transferOffsetMismatch,
                        message:
                            "the end says \(meta.size) bytes; the receiver holds \(accepted.sink.size)\(entry.offer.isStream ? "" : " of \(entry.offer.size)")"
                    ))
            }
            inbound[key] = nil
            return .success((entry.offer, accepted))
        }
        let (offer, accepted) = try taken.get()
        let outcome: Result<String, ParleyError>
        do throws(ParleyError) {
            try accepted.sink.finish()
            guard accepted.sink.digest == Array(meta.sha256) else {
                accepted.sink.remove()
                throw ParleyError(
                    code: .transferHashMismatch,
                    message:
                        "\(offer.name.debugDescription) from user \(offer.sender) arrived with another SHA-256; it was discarded"
                )
            }
            outcome = .success(try accepted.sink.publish(in: accepted.folder, as: FileName.sanitized(offer.name)))
        } catch {
            outcome = .failure(error)
        }
        switch outcome {
        case .success:
            directTransfers.completed(key)
            link.write(
                Self.transferState(
                    .peerTransferEnd, requestID: frame.requestID, id: id, offset: meta.size, outcome: .completed))
            accepted.progress(ParleyClient.progress(id, meta.size, meta.size, accepted.resumedFrom, accepted.started))
        case .failure(let error):
            link.write(.error(error, requestID: frame.requestID))
        }
        accepted.waiter?.resume(returning: outcome)
    }

    /// PEER_TRANSFER_CLOSE: the sender gives up a transfer this node receives, or the recipient
    /// one this node sends.
    private func transferClosed(_ frame: Frame, by peer: UserID, on link: DirectLink) throws(ParleyError) {
        let meta: Parley_V1_TransferClose = try frame.decodeMeta()
        let id = TransferID(meta.transferID)
        let reason = String(decoding: meta.reason.utf8.prefix(256), as: UTF8.self)
        let key = DirectTransfers.Key(sender: peer, id: id)
        let entry = directTransfers.withInbound { $0.removeValue(forKey: key) }
        if let entry {
            let why =
                reason.isEmpty ? "the sender cancelled the transfer" : "the sender cancelled the transfer: \(reason)"
            let error = ParleyError(code: .cancelled, message: why)
            if let waiting = entry.waitingStart {
                let gone = ParleyError(code: .transferNotFound, message: why)
                entry.link.write(.error(gone, requestID: waiting))
            }
            if let accepted = entry.accepted {
                accepted.sink.remove()
                accepted.waiter?.resume(returning: .failure(error))
            }
            eventQueue.offer(.transferStatus(Self.status(of: entry.offer, .cancelled, reason: reason)))
        } else {
            let outcome = meta.outcome.outcome ?? .cancelled
            guard
                directTransfers.stopSending(id, DirectTransfers.Stop(byPeer: true, outcome: outcome, reason: reason))
                    != nil
            else {
                throw ParleyError(code: .transferNotFound, message: "no transfer \(id) runs between these nodes")
            }
        }
        link.write(
            Frame(type: FrameType.peerTransferClose.response, requestID: frame.requestID, message: Parley_V1_Empty()))
    }

    /// Ends a transfer this node receives on the application's word: declines an undecided one
    /// (ERROR `TRANSFER_REFUSED` to the waiting START), or cancels one under way (PEER_TRANSFER_CLOSE
    /// to the sender) and deletes its partial file.
    ///
    /// - Returns: false when the offer is not a direct one this node holds.
    func closeDirectOffer(_ offer: FileOffer, _ outcome: TransferOutcome, reason: String) async -> Bool {
        let key = DirectTransfers.Key(sender: offer.sender, id: offer.id)
        let text = reason.isEmpty ? "the recipient \(outcome.rawValue) the file" : reason
        let found = directTransfers.withInbound { inbound -> (known: Bool, undecided: DirectTransfers.Inbound?) in
            guard let entry = inbound[key] else { return (false, nil) }
            guard entry.accepted == nil else { return (true, nil) }
            inbound[key] = nil
            return (true, entry)
        }
        guard found.known else { return false }
        if let undecided = found.undecided {
            if let waiting = undecided.waitingStart {
                undecided.link.write(.error(ParleyError(code: .transferRefused, message: text), requestID: waiting))
            }
            return true
        }
        // Under way: the sender is told first, so that it knows why its next chunks fail.
        if let link = directTransfers.withInbound({ $0[key]?.link }) {
            var close = Parley_V1_TransferClose()
            close.sender = offer.sender.rawValue
            close.transferID = offer.id.rawValue
            close.outcome = Parley_V1_TransferOutcome(outcome)
            close.reason = String(decoding: text.utf8.prefix(256), as: UTF8.self)
            do throws(ParleyError) {
                _ = try await link.request(.peerTransferClose, close, payload: [], timeout: configuration.peerTimeout)
            } catch {
                // The sender learns it from its next chunk, answered TRANSFER_NOT_FOUND.
                logger.debug("cannot tell the sender", metadata: ["transfer.id": "\(offer.id)", "error": "\(error)"])
            }
        }
        if let accepted = directTransfers.withInbound({ $0.removeValue(forKey: key) })?.accepted {
            accepted.sink.remove()
            accepted.waiter?.resume(
                returning: .failure(ParleyError(code: .cancelled, message: "the transfer was \(outcome.rawValue) here"))
            )
        }
        return true
    }

    /// Accepts a direct offer: the waiting START is answered with the length of the partial file
    /// in `directory`, and the call returns the saved file's path once the sender's END matched.
    ///
    /// - Returns: nil when the offer is not a direct one this node holds.
    func receiveDirectly(
        _ offer: FileOffer, into directory: String, progress: @escaping @Sendable (TransferProgress) -> Void
    ) async throws(ParleyError) -> String? {
        let key = DirectTransfers.Key(sender: offer.sender, id: offer.id)
        guard directTransfers.withInbound({ $0[key] != nil }) else { return nil }
        let partial = URL(fileURLWithPath: directory).appendingPathComponent(ParleyClient.partialName(of: offer)).path
        let sink = try FileChunkSink(path: partial, expectedSize: offer.isStream ? .max : offer.size)
        let result = await withCheckedContinuation { continuation in
            let accepted = directTransfers.withInbound { inbound -> (DirectLink, UInt32?)? in
                guard var entry = inbound[key], entry.accepted == nil else { return nil }
                entry.accepted = DirectTransfers.Accepted(
                    sink: sink, folder: directory, progress: progress, resumedFrom: sink.size,
                    started: .now, waiter: continuation)
                let waiting = entry.waitingStart
                entry.waitingStart = nil
                inbound[key] = entry
                return (entry.link, waiting)
            }
            guard let accepted else {
                continuation.resume(
                    returning: .failure(
                        ParleyError(
                            code: .transferNotFound,
                            message: "transfer \(offer.id) from user \(offer.sender) is gone or received already")))
                return
            }
            if let waiting = accepted.1 {
                accepted.0.write(
                    Self.transferState(.peerTransferStart, requestID: waiting, id: offer.id, offset: sink.size))
            }
        }
        return try result.get()
    }
}

/// A progress report to make outside the lock that produced it.
struct TransferProgressReport {
    var callback: @Sendable (TransferProgress) -> Void
    var progress: TransferProgress
}
