import NIOCore
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Testing

/// The client against a scripted server: situations a real server produces only by bad luck.
@Suite("Client behaviour", .timeLimit(.minutes(1)))
struct ClientBehaviourTests {
    @Test("a non-fatal ERROR with request ID 0 does not become the reason the connection is lost")
    func nonFatalConnectionLevelError() async throws {
        let server = try await ScriptedServer.start { frame, _ in
            switch frame.type {
            case .logOn:
                // The logon answer, then the failure of a request the client sent with ID 0 (an
                // ACK_MESSAGES after a log-off, say): the protocol answers it with request ID 0 and
                // fatal = false.
                let error = ParleyError(code: .notLoggedOn, message: "log on first")
                return [
                    .send(logOnAnswer(to: frame, user: 1000, name: "alice")),
                    .send(.error(error, requestID: 0, fatal: false)),
                ]
            default:
                // Lose the connection before answering.
                return [.close]
            }
        }
        var configuration = server.clientConfiguration
        configuration.reconnects = false
        try await withTestClient(of: configuration) { test in
            try await test.client.logOn(userID: 1000, password: "pw")
            // The connection drops with this request unanswered: that is "not connected" (which
            // send() would retry), not the unrelated earlier error.
            try await expectError(.notConnected) { try await test.client.userExists(1000) }
            let reason = try await test.waitForEvent("the disconnect") { event -> ParleyError?? in
                if case .connectionStateChanged(.disconnected(let reason)) = event { return .some(reason) }
                return nil
            }
            #expect(reason?.code != .notLoggedOn)
        }
        await server.stop()
    }

    @Test("a fatal ERROR is the reason the connection ends")
    func fatalConnectionLevelError() async throws {
        let server = try await ScriptedServer.start { _, _ in
            let error = ParleyError(code: .slowConsumer, message: "too slow")
            return [.send(.error(error, requestID: 0, fatal: true)), .close]
        }
        var configuration = server.clientConfiguration
        configuration.reconnects = false
        try await withTestClient(of: configuration) { test in
            try await expectError(.slowConsumer) { try await test.client.userExists(1000) }
            let reason = try await test.waitForEvent("the disconnect") { event -> ParleyError?? in
                if case .connectionStateChanged(.disconnected(let reason)) = event { return .some(reason) }
                return nil
            }
            #expect(reason?.code == .slowConsumer)
        }
        await server.stop()
    }

    @Test("a message whose answer was lost with the connection is resent, with the same ID, after reconnecting")
    func resendAfterLostAnswer() async throws {
        let server = try await ScriptedServer.start { frame, connection in
            guard frame.type == .sendMessage else { return [] }
            // The first connection dies with the message unanswered; the second answers.
            guard connection > 0 else { return [.close] }
            var response = Parley_V1_SendMessageResponse()
            response.results = [DeliveryResult(recipient: 1001, status: .acceptedOnline, duplicate: true).wire]
            return [.send(Frame(type: FrameType.sendMessage.response, requestID: frame.requestID, message: response))]
        }
        // The request timeout covers the first connect, the lost connection, the reconnect and the
        // resend: a full CI run (every suite at once on two cores) took more than the default 10 s.
        var configuration = server.clientConfiguration
        configuration.retry.requestTimeout = .seconds(45)
        try await withTestClient(of: configuration) { test in
            let results = try await test.client.send(.text("again"), to: [1001], id: 555)
            #expect(results == [DeliveryResult(recipient: 1001, status: .acceptedOnline, duplicate: true)])
            let sent = server.received.items.filter { $0.frame.type == .sendMessage }
            // First on the connection that died, then once on a later one (under a full CI run's
            // load a reconnect can itself fail before it sends, so not necessarily the second).
            #expect(sent.count == 2)
            #expect(sent.first?.connection == 0)
            #expect((sent.last?.connection ?? 0) > 0)
            let ids = try sent.map { try $0.frame.decodeMeta(as: Parley_V1_SendMessageRequest.self).messageID }
            #expect(ids == [555, 555])
            #expect(sent.map { $0.frame.payload } == [ByteBuffer(string: "again"), ByteBuffer(string: "again")])
        }
        await server.stop()
    }

    @Test(
        "a message the server sends again after the application took it is not delivered again, but acknowledged again")
    func redeliveryAfterAcknowledgementIsHidden() async throws {
        let server = try await ScriptedServer.start { frame, connection in
            switch frame.type {
            case .logOn:
                let answer = logOnAnswer(to: frame, user: 1001, name: "bob")
                // The first session gets 1 and 2. The second gets them again (a server that
                // crashed before committing their acknowledgements), then 3.
                let ids: [UInt64] = connection == 0 ? [1, 2] : [1, 2, 3]
                return [.send(answer)] + ids.map { ScriptedServer.Action.send(messageEvent(id: $0)) }
            case .ackMessages where connection == 0:
                // Lose the connection once 2 is acknowledged.
                let request = try? frame.decodeMeta(as: Parley_V1_AckMessagesRequest.self)
                return request?.messages.contains { $0.messageID == 2 } == true ? [.close] : []
            default:
                return []
            }
        }
        try await withTestClient(of: server.clientConfiguration) { test in
            try await test.client.logOn(userID: 1001, password: "pw")
            try await test.waitForMessages(3)
            let again = try await server.received.wait(for: "1 and 2 acknowledged on the second connection") {
                items, _ -> Set<UInt64>? in
                let ids = Set(
                    items.filter { $0.connection == 1 && $0.frame.type == .ackMessages }.flatMap { item in
                        ((try? item.frame.decodeMeta(as: Parley_V1_AckMessagesRequest.self))?.messages ?? [])
                            .map(\.messageID)
                    }
                )
                return ids.isSuperset(of: [1, 2, 3]) ? ids : nil
            }
            #expect(again == [1, 2, 3])
            // 3 came after the copies of 1 and 2, so they were handled by the time it arrived.
            #expect(test.messages.map(\.id.rawValue) == [1, 2, 3])
            #expect(test.messages.map(\.body) == [.text("1"), .text("2"), .text("3")])
            #expect(test.client.hiddenRedeliveries == 2)
        }
        await server.stop()
    }
}

/// A MESSAGE event from user 1000 to 1001 whose body is its ID.
private func messageEvent(id: UInt64) -> Frame {
    var event = Parley_V1_MessageEvent()
    event.messageID = id
    event.sender = 1000
    event.recipients = [1001]
    event.kind = .text
    return Frame(type: .message, requestID: 0, message: event, payload: ByteBuffer(string: "\(id)"))
}

/// A successful answer to the LOGON request `frame`.
private func logOnAnswer(to frame: Frame, user: UInt32, name: String) -> Frame {
    var response = Parley_V1_LogonResponse()
    response.user.userID = user
    response.user.userName = name
    return Frame(type: FrameType.logOn.response, requestID: frame.requestID, message: response)
}
