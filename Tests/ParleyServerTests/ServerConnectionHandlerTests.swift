import NIOCore
import NIOEmbedded
import ParleyCore
import ParleyLink
import ParleyWire
import Testing

@testable import ParleyServer

@Suite("The connection handler on a testing channel")
struct ServerConnectionHandlerTests {
    /// A channel as the server sets one up (its link handler, the session attached to it),
    /// behind a codec that lets the test write and read whole frames.
    private func makeChannel(_ server: TestServer) async throws -> NIOAsyncTestingChannel {
        let channel = NIOAsyncTestingChannel()
        let context = server.context
        try await channel.eventLoop.submit {
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(FramesAsBytes())
            try sync.addParleyLinkHandlers(configuration: context.configuration.link)
            let handler = ServerConnectionHandler(server: context, remoteAddress: channel.remoteAddress)
            handler.attach(to: try sync.handler(type: LinkHandler.self))
        }.get()
        return channel
    }

    private func hello(capabilities: [String] = []) -> Frame {
        var hello = Parley_V1_Hello()
        hello.magic = WireProtocol.magic
        hello.minVersion = WireProtocol.version
        hello.maxVersion = WireProtocol.version
        hello.agent = "session-test"
        hello.capabilities = capabilities
        return Frame(type: .hello, requestID: 1, message: hello)
    }

    /// Whether the channel's session keeps a ``PresenceWatch`` (read on its loop).
    private func hasPresenceWatch(_ channel: NIOAsyncTestingChannel) async throws -> Bool {
        try await channel.eventLoop.submit {
            let link = try channel.pipeline.syncOperations.handler(type: LinkHandler.self)
            return (link.frameReceiver as? ServerConnectionHandler)?.presenceWatch != nil
        }.get()
    }

    private func errorCode(_ frame: Frame) -> ParleyError.Code? {
        frame.type == .error ? ParleyError(errorFrame: frame).code : nil
    }

    @Test("a first frame other than HELLO gets a fatal HANDSHAKE_REQUIRED and the connection closes")
    func handshakeRequired() async throws {
        let server = try TestServer()
        let channel = try await makeChannel(server)
        try await channel.writeInbound(Frame(type: .userExists, requestID: 5, message: Parley_V1_UserIdRequest()))
        let answer = try await channel.waitForOutboundWrite(as: Frame.self)
        #expect(errorCode(answer) == .handshakeRequired)
        #expect(answer.requestID == 0)
        try await channel.closeFuture.get()
        await server.close()
    }

    @Test("register, a pipelined send to oneself, its push and acknowledgement, logoff")
    func registerSendAndLogOff() async throws {
        let server = try TestServer()
        let channel = try await makeChannel(server)

        try await channel.writeInbound(hello())
        let ok = try await channel.waitForOutboundWrite(as: Frame.self)
        #expect(ok.type == FrameType.hello.response)
        #expect(try ok.decodeMeta(as: Parley_V1_HelloOk.self).version == WireProtocol.version)

        try await channel.writeInbound(Frame(type: .sendMessage, requestID: 2, message: Parley_V1_SendMessageRequest()))
        #expect(errorCode(try await channel.waitForOutboundWrite(as: Frame.self)) == .notLoggedOn)

        var register = Parley_V1_RegisterRequest()
        register.info = Parley_V1_UserInfo(UserInfo(userName: "Ada"))
        register.password = "correct horse"
        register.requestedUserID = 5000
        let user = UserID(5000)
        var send = Parley_V1_SendMessageRequest()
        send.messageID = 42
        send.kind = .text
        send.recipients = [user.rawValue]
        // The send is pipelined right behind REGISTER: it waits and is handled as the new user.
        try await channel.writeInbound(Frame(type: .register, requestID: 3, message: register))
        try await channel.writeInbound(
            Frame(type: .sendMessage, requestID: 4, message: send, payload: ByteBuffer(string: "hello me")))
        let registerAnswer = try await channel.waitForOutboundWrite(as: Frame.self)
        #expect(registerAnswer.type == FrameType.register.response)
        #expect(try registerAnswer.decodeMeta(as: Parley_V1_LogonResponse.self).user.userID == user.rawValue)
        #expect(server.context.registry.isOnline(user))
        var frames: [FrameType: Frame] = [:]
        for _ in 0..<2 {
            let frame = try await channel.waitForOutboundWrite(as: Frame.self)
            frames[frame.type] = frame
        }
        let sent = try #require(frames[FrameType.sendMessage.response])
        let results = try sent.decodeMeta(as: Parley_V1_SendMessageResponse.self).results
        #expect(results.count == 1)
        #expect(results.first?.recipient == user.rawValue)
        let pushed = try #require(frames[.message])
        let event = try pushed.decodeMeta(as: Parley_V1_MessageEvent.self)
        #expect(event.messageID == 42)
        #expect(event.sender == user.rawValue)
        #expect(String(buffer: pushed.payload) == "hello me")

        var ack = Parley_V1_AckMessagesRequest()
        var key = Parley_V1_MessageRef()
        key.sender = user.rawValue
        key.messageID = 42
        ack.messages = [key]
        try await channel.writeInbound(Frame(type: .ackMessages, requestID: 5, message: ack))
        #expect(try await channel.waitForOutboundWrite(as: Frame.self).type == FrameType.ackMessages.response)

        try await channel.writeInbound(Frame(type: .logOff, requestID: 6, message: Parley_V1_Empty()))
        #expect(try await channel.waitForOutboundWrite(as: Frame.self).type == FrameType.logOff.response)
        #expect(!server.context.registry.isOnline(user))
        try await channel.writeInbound(Frame(type: .sendMessage, requestID: 7, message: send))
        #expect(errorCode(try await channel.waitForOutboundWrite(as: Frame.self)) == .notLoggedOn)

        _ = try await channel.finish()
        await server.close()
    }

    /// Registers a user on a fresh connection; returns the channel and the user ID.
    private func registered(_ server: TestServer, name: String) async throws -> (NIOAsyncTestingChannel, UInt32) {
        let channel = try await makeChannel(server)
        try await channel.writeInbound(hello())
        _ = try await channel.waitForOutboundWrite(as: Frame.self)
        var register = Parley_V1_RegisterRequest()
        register.info = Parley_V1_UserInfo(UserInfo(userName: name))
        register.password = "secret"
        try await channel.writeInbound(Frame(type: .register, requestID: 2, message: register))
        let answer = try await channel.waitForOutboundWrite(as: Frame.self)
        return (channel, try answer.decodeMeta(as: Parley_V1_LogonResponse.self).user.userID)
    }

    private func logOn(_ user: UInt32, on channel: NIOAsyncTestingChannel) async throws -> Frame {
        try await channel.writeInbound(hello())
        _ = try await channel.waitForOutboundWrite(as: Frame.self)
        var logOn = Parley_V1_LogonRequest()
        logOn.userID = user
        logOn.password = "secret"
        try await channel.writeInbound(Frame(type: .logOn, requestID: 2, message: logOn))
        return try await channel.waitForOutboundWrite(as: Frame.self)
    }

    @Test("only a session that asked for PRESENCE events keeps their order; none after it ends")
    func presenceWatchOnlyWhenAsked() async throws {
        let server = try TestServer()
        let (plain, _) = try await registered(server, name: "Ada")
        #expect(try await !hasPresenceWatch(plain))

        let watching = try await makeChannel(server)
        try await watching.writeInbound(hello(capabilities: ["presence"]))
        _ = try await watching.waitForOutboundWrite(as: Frame.self)
        var register = Parley_V1_RegisterRequest()
        register.info = Parley_V1_UserInfo(UserInfo(userName: "Grace"))
        register.password = "secret"
        try await watching.writeInbound(Frame(type: .register, requestID: 2, message: register))
        #expect(try await watching.waitForOutboundWrite(as: Frame.self).type == FrameType.register.response)
        #expect(try await hasPresenceWatch(watching))
        #expect(try await watching.waitForOutboundWrite(as: Frame.self).type == .presence, "the logon snapshot")

        try await watching.writeInbound(Frame(type: .logOff, requestID: 3, message: Parley_V1_Empty()))
        #expect(try await watching.waitForOutboundWrite(as: Frame.self).type == FrameType.logOff.response)
        #expect(try await !hasPresenceWatch(watching))
        _ = try await plain.finish()
        _ = try await watching.finish()
        await server.close()
    }

    @Test("a second logon of a logged-on user is refused while the first session holds")
    func sessionExists() async throws {
        let server = try TestServer()
        let (first, user) = try await registered(server, name: "Grace")
        let second = try await makeChannel(server)
        #expect(errorCode(try await logOn(user, on: second)) == .sessionExists)
        #expect(server.context.registry.isOnline(UserID(user)))
        #expect(try await first.readOutbound(as: Frame.self) == nil, "the first session is told nothing")
        _ = try await first.finish()
        #expect(!server.context.registry.isOnline(UserID(user)), "closing the connection ends its session")
        _ = try await second.finish()
        await server.close()
    }

    @Test("with newer sessions winning, the first connection is told it was replaced and closed")
    func takeover() async throws {
        let server = try TestServer { $0.replacesExistingSession = true }
        let (first, user) = try await registered(server, name: "Grace")
        let second = try await makeChannel(server)
        #expect(try await logOn(user, on: second).type == FrameType.logOn.response)
        let replaced = try await first.waitForOutboundWrite(as: Frame.self)
        #expect(replaced.type == .sessionReplaced)
        #expect(errorCode(try await first.waitForOutboundWrite(as: Frame.self)) == .sessionReplaced)
        try await first.closeFuture.get()
        #expect(server.context.registry.isOnline(UserID(user)), "the session is the second connection's")
        _ = try await second.finish()
        await server.close()
    }
}

/// The test's side of the byte stream: frames it writes reach the link as their bytes, and the
/// bytes the link writes come out as frames, one outbound write each.
private final class FramesAsBytes: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = Frame

    private var decoder = FrameDecoder(maximumFrameSize: 1 << 24)
    private var pending = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(wrapInboundOut(unwrapInboundIn(data).encoded()))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var bytes = unwrapOutboundIn(data)
        pending.writeBuffer(&bytes)
        do {
            while let frame = try decoder.decode(buffer: &pending) {
                context.write(wrapOutboundOut(frame), promise: nil)
            }
            promise?.succeed()
        } catch {
            promise?.fail(error)
            context.fireErrorCaught(error)
        }
    }
}
