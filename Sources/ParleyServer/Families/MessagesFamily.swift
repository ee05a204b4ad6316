import Foundation
import NIOCore
import ParleyCore
import ParleyServerStore
import ParleyWire

/// Messages: SEND_MESSAGE and ACK_MESSAGES, and the MESSAGE and DELIVERY_RECEIPT pushes of a
/// logged-on session (docs/PROTOCOL.md sections 11 and 12).
///
/// Sends go through the server's ``MessageCommitter`` (group commit); what this session is
/// pushed is decided by its ``DeliveryStateMachine``.
///
/// One instance serves every connection; a connection's ``DeliveryStateMachine`` is kept in the
/// connection (``SessionContext/withDelivery(_:)``).
final class MessagesFamily: RequestFamily, Sendable {
    private static let types: [FrameType] = [.sendMessage, .ackMessages]

    var requestTypes: [FrameType] { Self.types }

    func handle(_ frame: Frame, in session: SessionContext) throws(ParleyError) {
        switch frame.type {
        case .sendMessage:
            try sendMessage(frame, sender: try session.requireUser(), in: session)
        case .ackMessages:
            let me = try session.requireUser()
            acknowledge(try Self.decodeAck(frame), recipient: me, in: session)
            session.respond(to: frame, with: Parley_V1_Empty())
        default:
            throw ParleyError(code: .unknownRequest, message: "unknown frame type \(frame.type)")
        }
    }

    // MARK: Session lifecycle

    func sessionStarted(in session: SessionContext) {
        let window = session.server.configuration.deliveryWindow
        let writable = session.isWritable
        let start = session.withDelivery { delivery in
            delivery = DeliveryStateMachine(window: window, writable: writable)
            return delivery.start()
        }
        perform(start, in: session)
    }

    /// Stored messages that were pushed but not acknowledged stay stored.
    func sessionEnded(_ user: UserID, in session: SessionContext) {
        session.withDelivery { $0 = DeliveryStateMachine(window: 1) }
    }

    func writabilityChanged(_ writable: Bool, in session: SessionContext) {
        guard session.identity.user != nil else { return }
        perform(session.withDelivery { $0.writabilityChanged(writable) }, in: session)
    }

    // MARK: Sending

    private func sendMessage(_ frame: Frame, sender: UserID, in session: SessionContext) throws(ParleyError) {
        let server = session.server
        let request = try Self.decodeSendMessage(frame)
        server.metrics.messageReceived()
        guard request.messageID != 0 else {
            throw ParleyError(code: .invalidRequest, message: "message ID 0 is reserved")
        }
        let recipients: [UserID]
        if request.recipients.count == 1 {
            recipients = request.recipients
        } else {
            var seen = Set<UserID>()
            recipients = request.recipients.filter { seen.insert($0).inserted }
        }
        guard !recipients.isEmpty else {
            throw ParleyError(code: .invalidRequest, message: "a message needs at least one recipient")
        }
        guard recipients.count <= WireProtocol.maximumRecipients else {
            throw ParleyError(
                code: .tooManyRecipients,
                message: "at most \(WireProtocol.maximumRecipients) recipients per message"
            )
        }
        let isText = request.kind == 0
        if isText {
            let valid = frame.payload.withUnsafeReadableBytes { bytes in
                // Validated in place: a String of the body would cost an allocation per message.
                if #available(macOS 26, *) {
                    (try? UTF8Span(validating: bytes.assumingMemoryBound(to: UInt8.self).span)) != nil
                } else {
                    String(validating: bytes, as: UTF8.self) != nil
                }
            }
            guard valid else {
                throw ParleyError(code: .invalidUTF8, message: "a text message must be valid UTF-8")
            }
        }
        let sentAt = Date(millisecondsSince1970: request.sentAtMs)
        // A constant read once at start: without inspection the path below is the only one.
        if server.hooks.inspectsMessages {
            inspect(frame, request, sender: sender, recipients: recipients, isText: isText, sentAt: sentAt, in: session)
            return
        }
        submit(
            frame,
            request,
            sender: sender,
            recipients: recipients,
            isText: isText,
            sentAt: sentAt,
            payload: frame.payload,
            in: session
        )
    }

    /// Stores and delivers a checked SEND_MESSAGE (with `payload` as its body), or hands it to
    /// the server application; answers it once committed.
    private func submit(
        _ frame: Frame,
        _ request: HotMeta.SendMessage,
        sender: UserID,
        recipients: [UserID],
        isText: Bool,
        sentAt: Date,
        payload: ByteBuffer,
        in session: SessionContext
    ) {
        let server = session.server
        var results: [UserID: DeliveryResult.Status] = [:]
        let toServer = recipients.contains(.server)
        if toServer {
            let body = MessageBody(isText: isText, bytes: Array(payload.readableBytesView))
            results[.server] = server.applicationInbox.offer(
                Message(
                    id: MessageID(request.messageID),
                    sender: sender,
                    recipients: recipients,
                    body: body,
                    sentAt: sentAt,
                    deliveredAt: Date()
                )
            )
        }
        let users = toServer ? recipients.filter { $0 != .server } : recipients
        guard !users.isEmpty else {
            session.respond(to: frame, with: Self.sendResponse(recipients, results))
            return
        }
        let message = NewMessage(
            messageID: MessageID(request.messageID),
            sender: sender,
            recipients: users,
            allRecipients: recipients,
            isText: isText,
            body: payload,
            sentAt: sentAt,
            wantsReceipt: request.wantReceipt
        )
        guard let handle = session.handle else { return }
        session.requestStarted(query: false)
        server.committer.submit(
            MessageCommitter.Submission(
                message: message, sender: handle, request: frame, serverResults: results),
            on: handle.eventLoop
        )
    }

    /// Hands a checked SEND_MESSAGE to the application's ``ParleyServerApplication/inspect(_:server:)``
    /// and carries out its decision. Later frames of the connection wait meanwhile, so messages
    /// keep their order.
    private func inspect(
        _ frame: Frame,
        _ request: HotMeta.SendMessage,
        sender: UserID,
        recipients: [UserID],
        isText: Bool,
        sentAt: Date,
        in session: SessionContext
    ) {
        guard let handle = session.handle else { return }
        let server = session.server
        let message = Message(
            id: MessageID(request.messageID),
            sender: sender,
            recipients: recipients,
            body: MessageBody(isText: isText, bytes: Array(frame.payload.readableBytesView)),
            sentAt: sentAt,
            deliveredAt: Date()
        )
        let promise = handle.eventLoop.makePromise(of: MessageDecision.self)
        session.sessionChangeStarted()
        server.hooks.decide(
            late: .reject(reason: "the server application did not decide in time"),
            unavailable: .reject(reason: "the server application is overloaded or stopped"),
            { application, parley in await application.inspect(message, server: parley) },
            completion: { promise.succeed($0) }
        )
        promise.futureResult.assumeIsolated().whenSuccess { [self] decision in
            defer { session.sessionChangeEnded() }
            // The connection closed or logged off meanwhile: nobody waits for an answer.
            guard session.identity.user == sender else { return }
            var payload = frame.payload
            switch decision {
            case .deliver:
                break
            case .replaceText(let text) where isText:
                guard text.utf8.count <= Self.maximumRewrittenText(server.configuration.maximumFrameSize) else {
                    session.respond(
                        to: frame,
                        with: ParleyError(
                            code: .messageRejected, message: "the server application's rewritten text is too long")
                    )
                    return
                }
                payload = ByteBuffer(string: text)
            case .replaceText:
                session.logger.debug("the server application rewrote a binary message; delivered unchanged")
            case .reject(let code, let reason):
                session.respond(to: frame, with: ParleyError(code: code, message: reason))
                return
            }
            submit(
                frame,
                request,
                sender: sender,
                recipients: recipients,
                isText: isText,
                sentAt: sentAt,
                payload: payload,
                in: session
            )
        }
    }

    /// The meta of a SEND_MESSAGE: decoded by hand in its usual form, by the strict generic
    /// decoder otherwise (which names what is wrong).
    private static func decodeSendMessage(_ frame: Frame) throws(ParleyError) -> HotMeta.SendMessage {
        if let request = HotMeta.SendMessage(meta: frame.meta) { return request }
        let request: Parley_V1_SendMessageRequest = try frame.decodeMeta()
        let kind: Int32
        switch request.kind {
        case .text: kind = 0
        case .binary: kind = 1
        case .UNRECOGNIZED(let raw):
            throw ParleyError(code: .invalidRequest, message: "unknown payload kind \(raw)")
        }
        return HotMeta.SendMessage(
            messageID: request.messageID,
            recipients: request.recipients.map(UserID.init(rawValue:)),
            kind: kind,
            sentAtMs: request.sentAtMs,
            wantReceipt: request.wantReceipt
        )
    }

    /// The references of an ACK_MESSAGES, decoded like ``decodeSendMessage(_:)``.
    private static func decodeAck(_ frame: Frame) throws(ParleyError) -> [DeliveryStateMachine.Key] {
        if let references = HotMeta.ackReferences(meta: frame.meta) {
            return references.map {
                DeliveryStateMachine.Key(sender: UserID(rawValue: $0.sender), messageID: MessageID($0.messageID))
            }
        }
        let request: Parley_V1_AckMessagesRequest = try frame.decodeMeta()
        return request.messages.map {
            DeliveryStateMachine.Key(sender: UserID($0.sender), messageID: MessageID($0.messageID))
        }
    }

    /// The longest text a rewrite may have: what fits in a MESSAGE frame beside its meta.
    static func maximumRewrittenText(_ maximumFrameSize: Int) -> Int {
        max(maximumFrameSize - 4096, maximumFrameSize / 2)
    }

    /// A SEND_MESSAGE was committed (or failed): answers it, with the recipients' online status
    /// as it is now, right after the commit, and lets waiting frames go on. The usual answer
    /// (every recipient a user, each stored for the first time) is written by hand straight into
    /// the frame (``/ParleyWire/HotMeta``), the others by the generic encoder.
    func stored(
        _ submission: MessageCommitter.Submission, _ outcome: MessageCommitter.Result, in session: SessionContext
    ) {
        guard let request = submission.request else { return }
        let serverResults = submission.serverResults
        defer { session.requestAnswered(query: false) }
        let outcomes: MessageCommitter.Outcomes
        switch outcome {
        case .success(let value): outcomes = value
        case .failure(let error):
            session.respond(to: request, with: error)
            return
        }
        let registry = session.server.registry
        let allFirstStores =
            serverResults.isEmpty
            && (0..<outcomes.count).allSatisfy { position in
                guard case .stored(let delivery) = outcomes[position: position].outcome else { return false }
                return !delivery.duplicate
            }
        if allFirstStores {
            session.respond(to: request, metaCapacity: 8 * outcomes.count) { meta in
                for position in 0..<outcomes.count {
                    let user = outcomes[position: position].recipient
                    HotMeta.writeAcceptedResponse(
                        recipient: user.rawValue, status: registry.isOnline(user) ? 1 : 2, to: &meta)
                }
            }
            return
        }
        var statuses = serverResults
        var duplicates = Set<UserID>()
        for position in 0..<outcomes.count {
            let (user, outcome) = outcomes[position: position]
            switch outcome {
            case .stored(let delivery):
                statuses[user] = registry.isOnline(user) ? .acceptedOnline : .acceptedOffline
                if delivery.duplicate { duplicates.insert(user) }
            case .recipientNotFound:
                statuses[user] = .failed(ParleyError(code: .recipientNotFound, message: "no user \(user)"))
            }
        }
        session.respond(
            to: request,
            with: Self.sendResponse(submission.message.allRecipients, statuses, duplicates: duplicates))
    }

    private static func sendResponse(
        _ recipients: [UserID],
        _ statuses: [UserID: DeliveryResult.Status],
        duplicates: Set<UserID> = []
    ) -> Parley_V1_SendMessageResponse {
        var response = Parley_V1_SendMessageResponse()
        response.results = recipients.map { recipient in
            DeliveryResult(
                recipient: recipient,
                status: statuses[recipient]
                    ?? .failed(ParleyError(code: .internalError, message: "no result for \(recipient)")),
                duplicate: duplicates.contains(recipient)
            ).wire
        }
        return response
    }

    // MARK: Delivering

    private func acknowledge(_ keys: [DeliveryStateMachine.Key], recipient: UserID, in session: SessionContext) {
        guard !keys.isEmpty else { return }
        let acknowledgement = MessageCommitter.Acknowledgement(
            recipient: recipient,
            messages: keys.map { (sender: $0.sender, messageID: $0.messageID) }
        )
        if let loop = session.eventLoop {
            session.server.committer.acknowledge(acknowledgement, on: loop)
        } else {
            session.server.committer.acknowledge(acknowledgement)
        }
        perform(session.withDelivery { $0.acknowledged(keys).next }, in: session)
    }

    /// A message for this session was just committed.
    func liveDelivery(_ live: MessageCommitter.LiveDelivery, in session: SessionContext) {
        guard session.identity.user == live.recipient else { return }
        let key = DeliveryStateMachine.Key(sender: live.message.sender, messageID: live.message.messageID)
        let action = session.withDelivery { $0.liveMessage(sequence: live.sequence, key: key) }
        if case .push = action {
            push(
                messageID: live.message.messageID,
                sender: live.message.sender,
                recipients: live.message.allRecipients,
                isText: live.message.isText,
                payload: live.payload,
                sentAt: live.message.sentAt,
                storedAt: live.storedAt,
                in: session
            )
        } else {
            perform(action, in: session)
        }
    }

    /// A message this session's user sent with a receipt wanted was acknowledged.
    func deliveryReceipt(_ ack: AcknowledgedMessage, in session: SessionContext) {
        guard session.identity.user == ack.sender else { return }
        var event = Parley_V1_DeliveryReceiptEvent()
        event.messageID = ack.messageID.rawValue
        event.recipient = ack.recipient.rawValue
        event.acknowledgedAtMs = ack.acknowledgedAt.millisecondsSince1970
        session.push(Frame(type: .deliveryReceipt, requestID: 0, message: event))
    }

    private func perform(_ action: DeliveryStateMachine.Action, in session: SessionContext) {
        switch action {
        case .none, .push:
            // Live pushes carry their message and are written by `liveDelivery`.
            break
        case .load(let after, let limit):
            load(after: after, limit: limit, in: session)
        }
    }

    private func load(after: Int64, limit: Int, in session: SessionContext) {
        guard let user = session.identity.user else { return }
        let store = session.server.messages
        session.blocking { () throws(ParleyError) in
            try store.pendingMessages(for: user, after: after, limit: limit)
        } then: { [self] result in
            guard session.identity.user == user else { return }
            switch result {
            case .success(let messages):
                let keyed = messages.map {
                    (sequence: $0.sequence, key: DeliveryStateMachine.Key(sender: $0.sender, messageID: $0.messageID))
                }
                let (pushed, next) = session.withDelivery { $0.loaded(keyed, limit: limit) }
                let wanted = Set(pushed)
                for message in messages where wanted.contains(message.sequence) {
                    push(
                        messageID: message.messageID,
                        sender: message.sender,
                        recipients: message.recipients,
                        isText: message.isText,
                        payload: ByteBuffer(bytes: message.body),
                        sentAt: message.sentAt,
                        storedAt: message.storedAt,
                        in: session
                    )
                }
                perform(next, in: session)
            case .failure(let error):
                session.server.metrics.storageErrors.increment()
                session.logger.debug("loading stored messages failed", metadata: ["error": "\(error)"])
                session.server.hooks.notify(.error(ServerConnectionHandler.parleyError(error)))
                session.withDelivery { $0.loadFailed() }
            }
        }
    }

    private func push(
        messageID: MessageID,
        sender: UserID,
        recipients: [UserID],
        isText: Bool,
        payload: ByteBuffer,
        sentAt: Date,
        storedAt: Date,
        in session: SessionContext
    ) {
        let deliveredAt = Date().millisecondsSince1970
        session.push(type: .message, payload: payload, metaCapacity: 32 + 5 * recipients.count) {
            HotMeta.writeMessageEvent(
                messageID: messageID.rawValue,
                sender: sender.rawValue,
                recipients: recipients,
                kind: isText ? 0 : 1,
                sentAtMs: sentAt.millisecondsSince1970,
                deliveredAtMs: deliveredAt,
                storedAtMs: storedAt.millisecondsSince1970,
                to: &$0
            )
        }
        session.server.metrics.messageDelivered()
    }
}
