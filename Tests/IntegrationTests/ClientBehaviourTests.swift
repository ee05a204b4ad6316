import NIOCore
import ParleyClient
import ParleyCore
import ParleyServer
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
                var response = Parley_V1_LogonResponse()
                response.user.userID = 1000
                response.user.userName = "alice"
                // Then the failure of a request the client sent with ID 0 (an ACK_MESSAGES after a
                // log-off, say): the protocol answers it with request ID 0 and fatal = false.
                let error = ParleyError(code: .notLoggedOn, message: "log on first")
                return [
                    .send(Frame(type: FrameType.logOn.response, requestID: frame.requestID, message: response)),
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
        try await withTestClient(of: server.clientConfiguration) {
            test in
            let results = try await test.client.send(.text("again"), to: [1001], id: 555)
            #expect(results == [DeliveryResult(recipient: 1001, status: .acceptedOnline, duplicate: true)])
            let sent = server.received.items.filter { $0.frame.type == .sendMessage }
            #expect(sent.map(\.connection) == [0, 1])
            let ids = try sent.map { try $0.frame.decodeMeta(as: Parley_V1_SendMessageRequest.self).messageID }
            #expect(ids == [555, 555])
            #expect(sent.map { $0.frame.payload } == [ByteBuffer(string: "again"), ByteBuffer(string: "again")])
        }
        await server.stop()
    }
}
