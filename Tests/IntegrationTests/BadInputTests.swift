import NIOCore
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Testing

@Suite("Bad input from raw sockets", .timeLimit(.minutes(1)))
struct BadInputTests {
    @Test(
        "garbage bytes get a fatal error and a close, while a logged-on client keeps working",
        arguments: [
            // An HTTP request: its first four bytes read as a huge length.
            (Array("GET / HTTP/1.1\r\nHost: parley\r\n\r\n".utf8), ParleyError.Code.frameTooLarge),
            // A length shorter than the frame header.
            ([0, 0, 0, 1, 0xAB, 0xCD, 0xEF], ParleyError.Code.protocolViolation),
            // A meta length beyond the frame.
            ([0, 0, 0, 12, 0, 1, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF], ParleyError.Code.protocolViolation),
        ]
    )
    func garbage(bytes: [UInt8], code: ParleyError.Code) async throws {
        try await withTestServer { server in
            try await withTestClients(3, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")

                // A guest, and a logged-on connection, break the protocol.
                let guest = try await RawConnection.connect(to: server.address)
                let user = try await RawConnection.connect(to: server.address)
                try await user.hello()
                let mallory = try await user.register("mallory")
                let frameCount = user.frames.items.count
                for raw in [guest, user] {
                    try await raw.send(bytes: bytes)
                }
                for (raw, skip) in [(guest, 0), (user, frameCount)] {
                    let frames = try await raw.waitUntilClosed().dropFirst(skip)
                    #expect(frames.count == 1)
                    #expect(frames.first?.isFatalError == true)
                    #expect(raw.connectionErrors.map(\.code) == [code])
                }

                let results = try await clients[0].client.send(.text("still here"), to: [bob, mallory])
                #expect(results.map(\.status) == [.acceptedOnline, .acceptedOffline])
                #expect(try await clients[1].waitForMessages(1).first?.body == .text("still here"))
                // The broken connection's session is over: the user can log on again.
                let logon = try await clients[2].client.logOn(userID: mallory, password: "secret")
                #expect(logon.storedMessages == 1)
            }
        }
    }

    @Test("an oversized length is refused with FRAME_TOO_LARGE before the frame arrives")
    func oversizedFrame() async throws {
        try await withTestServer(ServerChanges { $0.maximumFrameSize = 4096 }) { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            // Only the length field: the server must not wait for 4097 more bytes.
            var length = ByteBuffer()
            length.writeInteger(UInt32(4097))
            try await raw.send(bytes: Array(length.readableBytesView))
            let frames = try await raw.waitUntilClosed()
            #expect(frames.last?.isFatalError == true)
            #expect(raw.connectionErrors.map(\.code) == [.frameTooLarge])

            // A frame of exactly the maximum is fine.
            let ok = try await RawConnection.connect(to: server.address)
            try await ok.hello()
            var request = Parley_V1_FindUserIdRequest()
            request.userName = String(repeating: "x", count: 4096 - Frame.headerSize - 3)
            let frame = Frame(type: .findUserID, requestID: ok.makeRequestID(), message: request)
            #expect(frame.length == 4096)
            let answer = try await ok.request(frame)
            #expect(answer.type == FrameType.findUserID.response)
            await ok.close()
        }
    }

    @Test("a frame cut off by the peer closing does not hurt the server")
    func truncatedFrame() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            var hello = Frame(type: .userExists, requestID: 2, message: Parley_V1_UserIdRequest()).encoded()
            let half = Array(hello.readBytes(length: hello.readableBytes - 2) ?? [])
            try await raw.send(bytes: half)
            // Half-close: the server sees the end of the stream in the middle of a frame.
            try await raw.channel.close(mode: .output)
            let frames = try await raw.waitUntilClosed()
            #expect(frames.map(\.type) == [FrameType.hello.response])

            try await withTestClient(of: server.clientConfiguration) { test in
                let alice = try await test.register("alice")
                #expect(try await test.client.userExists(alice))
            }
        }
    }

    @Test("an unknown frame type is answered with UNKNOWN_REQUEST and the connection goes on")
    func unknownFrameType() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            let unknown = Frame(type: FrameType(rawValue: 0x0077), requestID: 41, meta: ByteBuffer(bytes: [1, 2, 3]))
            let answer = try await raw.request(unknown)
            #expect(answer.type == .error)
            #expect(answer.requestID == 41)
            #expect(ParleyError(errorFrame: answer).code == .unknownRequest)
            #expect(!answer.isFatalError)

            // An answer-typed frame from a client is refused the same way.
            let response = try await raw.request(
                Frame(type: FrameType.userExists.response, requestID: 42, meta: ByteBuffer()))
            #expect(ParleyError(errorFrame: response).code == .invalidRequest)

            var exists = Parley_V1_UserIdRequest()
            exists.userID = 1000
            let next = try await raw.request(.userExists, exists)
            #expect(next.type == FrameType.userExists.response)
            #expect(try next.decodeMeta(as: Parley_V1_BoolResponse.self).value == false)
            await raw.close()
        }
    }

    @Test("a request before HELLO gets a fatal HANDSHAKE_REQUIRED and a close")
    func requestBeforeHello() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            var logon = Parley_V1_LogonRequest()
            logon.userID = 1000
            logon.password = "pw"
            try await raw.send(Frame(type: .logOn, requestID: 1, message: logon))
            let frames = try await raw.waitUntilClosed()
            #expect(frames.count == 1)
            #expect(frames.first?.isFatalError == true)
            #expect(raw.connectionErrors.map(\.code) == [.handshakeRequired])
        }
    }

    @Test("a bad HELLO gets a fatal error", arguments: ["magic", "version", "meta"])
    func badHello(problem: String) async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            var hello = Parley_V1_Hello()
            hello.magic = problem == "magic" ? "http" : WireProtocol.magic
            hello.minVersion = problem == "version" ? 2 : 1
            hello.maxVersion = problem == "version" ? 3 : 1
            var frame = Frame(type: .hello, requestID: 1, message: hello)
            if problem == "meta" { frame.meta = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF]) }
            try await raw.send(frame)
            let frames = try await raw.waitUntilClosed()
            let error = try #require(frames.first)
            #expect(error.isFatalError)
            let expected: ParleyError.Code =
                switch problem {
                case "magic": .protocolViolation
                case "version": .unsupportedVersion
                default: .invalidRequest
                }
            #expect(ParleyError(errorFrame: error).code == expected)
        }
    }

    @Test("text that is not UTF-8 is refused with INVALID_UTF8; binary is not checked")
    func invalidUTF8() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            let me = try await raw.register("raw")
            var send = Parley_V1_SendMessageRequest()
            send.messageID = 1
            send.recipients = [me.rawValue]
            send.kind = .text
            let bad = ByteBuffer(bytes: [0x68, 0x69, 0xC3, 0x28])
            let answer = try await raw.request(.sendMessage, send, payload: bad)
            #expect(answer.type == .error)
            #expect(ParleyError(errorFrame: answer).code == .invalidUTF8)
            #expect(!answer.isFatalError)

            send.kind = .binary
            let binary = try await raw.request(.sendMessage, send, payload: bad)
            #expect(binary.type == FrameType.sendMessage.response)
            let response: Parley_V1_SendMessageResponse = try binary.decodeMeta()
            #expect(response.results.map(\.status) == [.acceptedOnline])
            // The message to self arrives as an event.
            let event = try await raw.frames.wait(for: "the MESSAGE event") { frames, _ in
                frames.first { $0.type == .message }
            }
            #expect(event.payload == bad)
            await raw.close()
        }
    }

    @Test("a malformed meta section is refused with INVALID_REQUEST and the connection goes on")
    func malformedMeta() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            for type in [FrameType.logOn, .register, .userExists, .findUsers] {
                let frame = Frame(
                    type: type, requestID: raw.makeRequestID(), meta: ByteBuffer(bytes: [0xFF, 0xFF, 0xFF]))
                let answer = try await raw.request(frame)
                #expect(answer.type == .error)
                #expect(ParleyError(errorFrame: answer).code == .invalidRequest)
                #expect(!answer.isFatalError)
            }
            _ = try await raw.register("still-works")
            await raw.close()
        }
    }

    @Test("a recipient ID above 2^32 is refused with INVALID_REQUEST, not truncated to another user")
    func outOfRangeRecipient() async throws {
        try await withTestServer { server in
            try await withTestClient(of: server.clientConfiguration) { bob in
                let bobID = try await bob.register("bob")
                let raw = try await RawConnection.connect(to: server.address)
                try await raw.hello()
                _ = try await raw.register("mallory")
                // SendMessageRequest { message_id: 1, recipients: [2^32 + bob] } by hand.
                var recipient = (UInt64(1) << 32) + UInt64(bobID.rawValue)
                var packed: [UInt8] = []
                while recipient >= 0x80 {
                    packed.append(UInt8(recipient & 0x7F) | 0x80)
                    recipient >>= 7
                }
                packed.append(UInt8(recipient))
                let meta = [0x08, 0x01, 0x12, UInt8(packed.count)] + packed
                let frame = Frame(
                    type: .sendMessage, requestID: raw.makeRequestID(), meta: ByteBuffer(bytes: meta),
                    payload: ByteBuffer(string: "for bob?"))
                let answer = try await raw.request(frame)
                let error = ParleyError(errorFrame: answer)
                #expect(error.code == .invalidRequest)
                #expect(error.message.contains("recipients"))
                #expect(!answer.isFatalError)

                // A known field with the wrong wire type: user_id as LEN.
                let wrongType = Frame(
                    type: .userExists, requestID: raw.makeRequestID(), meta: ByteBuffer(bytes: [0x0A, 0x01, 0x07]))
                #expect(ParleyError(errorFrame: try await raw.request(wrongType)).code == .invalidRequest)

                // Nothing reached bob: the next message he gets is this one.
                var send = Parley_V1_SendMessageRequest()
                send.messageID = 2
                send.recipients = [bobID.rawValue]
                _ = try await raw.request(.sendMessage, send, payload: ByteBuffer(string: "hello bob"))
                #expect(try await bob.waitForMessages(1).map(\.body) == [.text("hello bob")])
                await raw.close()
            }
        }
    }

    @Test("oversized directory values and names are refused with INVALID_REQUEST")
    func oversizedValues() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            var find = Parley_V1_FindUsersRequest()
            var filter = Parley_V1_UserFilter()
            filter.field = .userName
            filter.match = .contains
            filter.value = String(repeating: "a", count: 50_000)
            find.filters = [filter]
            #expect(ParleyError(errorFrame: try await raw.request(.findUsers, find)).code == .invalidRequest)
            filter.value = String(repeating: "a", count: 256)
            find.filters = [filter]
            #expect(try await raw.request(.findUsers, find).type == FrameType.findUsers.response)
            find.filters = Array(repeating: filter, count: 17)
            #expect(ParleyError(errorFrame: try await raw.request(.findUsers, find)).code == .invalidRequest)

            // One character of 1 + 300 scalars: 64 characters or fewer, but over 256 bytes.
            var register = Parley_V1_RegisterRequest()
            register.info.userName = "e" + String(repeating: "\u{301}", count: 300)
            #expect(register.info.userName.count == 1)
            register.password = "pw"
            let refused = ParleyError(errorFrame: try await raw.request(.register, register))
            #expect(refused.code == .invalidRequest)
            #expect(refused.message.contains("bytes"))
            _ = try await raw.register("ok")
            await raw.close()
        }
    }
}
