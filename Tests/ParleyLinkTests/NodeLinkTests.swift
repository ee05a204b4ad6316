import NIOCore
import NIOPosix
import NIOSSL
import ParleyCore
import ParleyLink
import ParleyWire
import Synchronization
import Testing

@Suite("Node-to-node links over TLS", .timeLimit(.minutes(1)))
struct NodeLinkTests {
    @Test("a mutually authenticated TLS 1.3 link: both ends learn each other's node ID and exchange frames")
    func mutualAuthentication() async throws {
        try await withTemporaryDirectory { directory in
            let a = try NodeIdentity(dataDirectory: directory + "/a")
            let b = try NodeIdentity(dataDirectory: directory + "/b")
            let seen = Mutex<[NodeID]>([])
            try await withListener(
                identity: b,
                authorize: { peer, key in
                    seen.withLock { $0.append(peer) }
                    return NodeID(subjectPublicKeyInfo: key) == peer
                }
            ) { listener in
                let (channel, handshake) = try await dial(listener, as: a, expecting: b.nodeID)
                let peer = try await handshake.authenticatedPeer()
                #expect(peer.peer == b.nodeID)
                #expect(peer.publicKeyDER == b.publicKeyDER)
                #expect(try await channel.channel.nioSSL_tlsVersion().get() == .tlsv13)

                let echoed = try await channel.executeThenClose { inbound, outbound in
                    try await outbound.write(testFrame("hello, b"))
                    var iterator = inbound.makeAsyncIterator()
                    return try await iterator.next()
                }
                #expect(echoed == testFrame("hello, b"))

                let outcome = try await listener.nextOutcome()
                #expect(try outcome.get() == LinkAuthenticated(peer: a.nodeID, publicKeyDER: a.publicKeyDER))
                #expect(seen.withLock { $0 } == [a.nodeID])
            }
        }
    }

    @Test("dialling node A but reaching a listener with key B fails with the impostor error")
    func impostor() async throws {
        try await withTemporaryDirectory { directory in
            let a = try NodeIdentity(dataDirectory: directory + "/a")
            let b = try NodeIdentity(dataDirectory: directory + "/b")
            let dialler = try NodeIdentity(dataDirectory: directory + "/dialler")
            try await withListener(identity: b, authorize: { _, _ in true }) { listener in
                let (channel, handshake) = try await dial(listener, as: dialler, expecting: a.nodeID)
                let error = await #expect(throws: NodeLinkError.self) {
                    try await handshake.authenticatedPeer()
                }
                #expect(error?.code == .impostor)
                #expect(error?.message.contains(a.nodeID.description) == true)
                #expect(error?.message.contains(b.nodeID.description) == true)
                // NIOAsyncChannel must be finished: closing it is what the dialler does on failure.
                try await channel.executeThenClose { _, _ in }
                let outcome = try await listener.nextOutcome()
                #expect(throws: NodeLinkError.self) { try outcome.get() }
            }
        }
    }

    @Test("a listener whose authorize hook refuses the dialler fails the handshake")
    func unauthorizedDialler() async throws {
        try await withTemporaryDirectory { directory in
            let a = try NodeIdentity(dataDirectory: directory + "/a")
            let b = try NodeIdentity(dataDirectory: directory + "/b")
            try await withListener(identity: b, authorize: { _, _ in false }) { listener in
                let (channel, handshake) = try await dial(listener, as: a, expecting: b.nodeID)
                // TLS 1.3: the dialler may finish before the listener judged its certificate, so
                // either outcome is fine here; what matters is that the link goes no further.
                do {
                    _ = try await handshake.authenticatedPeer()
                } catch let error as NodeLinkError {
                    #expect(error.code == .handshakeFailed)
                }
                let outcome = try await listener.nextOutcome()
                #expect(throws: NodeLinkError.self) { try outcome.get() }
                if case .failure(let error) = outcome {
                    #expect(error.code == .peerNotAuthorized)
                    #expect(error.message.contains(a.nodeID.description))
                }
                // No frame ever comes back over the refused link.
                let answer: Frame?
                do {
                    answer = try await channel.executeThenClose { inbound, outbound in
                        try await outbound.write(testFrame("let me in"))
                        var iterator = inbound.makeAsyncIterator()
                        return try await iterator.next()
                    }
                } catch {
                    // The refusal reached the dialler as a TLS alert: no answer either.
                    answer = nil
                }
                #expect(answer == nil)
            }
        }
    }

    @Test("a plain-text client is dropped and the listener keeps serving")
    func plainClient() async throws {
        try await withTemporaryDirectory { directory in
            let a = try NodeIdentity(dataDirectory: directory + "/a")
            let b = try NodeIdentity(dataDirectory: directory + "/b")
            try await withListener(identity: b, authorize: { _, _ in true }) { listener in
                let plain = try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup)
                    .connect(host: "127.0.0.1", port: listener.port).get()
                try await plain.writeAndFlush(testFrame("no TLS here").encoded()).get()
                try await plain.closeFuture.get()
                let outcome = try await listener.nextOutcome()
                if case .failure(let error) = outcome {
                    #expect(error.code == .handshakeFailed)
                } else {
                    Issue.record("a plain-text client was accepted")
                }

                let (channel, handshake) = try await dial(listener, as: a, expecting: b.nodeID)
                #expect(try await handshake.authenticatedPeer().peer == b.nodeID)
                try await channel.executeThenClose { _, _ in }
            }
        }
    }

    @Test("a peer that offers only TLS 1.2 is refused")
    func tls12Refused() async throws {
        try await withTemporaryDirectory { directory in
            let b = try NodeIdentity(dataDirectory: directory + "/b")
            try await withListener(identity: b, authorize: { _, _ in true }) { listener in
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.maximumTLSVersion = .tlsv12
                configuration.certificateVerification = .none
                try await dialWithPlainTLS(listener, configuration)
                let outcome = try await listener.nextOutcome()
                #expect(throws: NodeLinkError.self) { try outcome.get() }
            }
        }
    }

    @Test("a dialler that presents no certificate is refused")
    func diallerWithoutCertificate() async throws {
        try await withTemporaryDirectory { directory in
            let b = try NodeIdentity(dataDirectory: directory + "/b")
            try await withListener(identity: b, authorize: { _, _ in true }) { listener in
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.minimumTLSVersion = .tlsv13
                configuration.certificateVerification = .none
                try await dialWithPlainTLS(listener, configuration)
                let outcome = try await listener.nextOutcome()
                #expect(throws: NodeLinkError.self) { try outcome.get() }
            }
        }
    }

    @Test("a dialler whose peer never answers the handshake gives up after the handshake timeout")
    func diallerHandshakeTimeout() async throws {
        try await withTemporaryDirectory { directory in
            let a = try NodeIdentity(dataDirectory: directory + "/a")
            // A listener that accepts and then says nothing.
            let silent = try await ServerBootstrap(group: .singletonMultiThreadedEventLoopGroup)
                .bind(host: "127.0.0.1", port: 0).get()
            let port = try #require(silent.localAddress?.port)
            let (channel, handshake) = try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup)
                .connect(host: "127.0.0.1", port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handshake = try channel.pipeline.syncOperations.addParleyNodeLinkHandlers(
                            identity: a,
                            role: .dialling(expecting: a.nodeID),
                            configuration: LinkConfiguration(),
                            handshakeTimeout: .milliseconds(200)
                        )
                        return (try FrameChannel(wrappingChannelSynchronously: channel), handshake)
                    }
                }
            let error = await #expect(throws: NodeLinkError.self) {
                try await handshake.authenticatedPeer()
            }
            #expect(error?.code == .handshakeTimedOut)
            try await channel.executeThenClose { _, _ in }
            try await silent.close()
        }
    }

    @Test("a connection that never completes the handshake is closed after the handshake timeout")
    func handshakeTimeout() async throws {
        try await withTemporaryDirectory { directory in
            let b = try NodeIdentity(dataDirectory: directory + "/b")
            try await withListener(identity: b, handshakeTimeout: .milliseconds(200), authorize: { _, _ in true }) {
                listener in
                let silent = try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup)
                    .connect(host: "127.0.0.1", port: listener.port).get()
                try await silent.closeFuture.get()
                let outcome = try await listener.nextOutcome()
                if case .failure(let error) = outcome {
                    #expect(error.code == .handshakeTimedOut)
                } else {
                    Issue.record("a silent client was accepted")
                }
            }
        }
    }
}

// MARK: - Test fixtures

private func testFrame(_ text: String) -> Frame {
    Frame(type: FrameType(rawValue: 0x0201), requestID: 7, meta: ByteBuffer(), payload: ByteBuffer(string: text))
}

private typealias FrameChannel = NIOAsyncChannel<Frame, Frame>

/// A TLS node listener on 127.0.0.1 that echoes frames and reports each connection's handshake outcome.
private struct Listener {
    let port: Int
    let outcomes: AsyncStream<Result<LinkAuthenticated, NodeLinkError>>

    func nextOutcome() async throws -> Result<LinkAuthenticated, NodeLinkError> {
        var iterator = outcomes.makeAsyncIterator()
        guard let outcome = await iterator.next() else { throw CancellationError() }
        return outcome
    }
}

private func withListener(
    identity: NodeIdentity,
    handshakeTimeout: Duration = .seconds(10),
    authorize: @escaping @Sendable (NodeID, [UInt8]) -> Bool,
    _ body: (Listener) async throws -> Void
) async throws {
    let (outcomes, continuation) = AsyncStream.makeStream(
        of: Result<LinkAuthenticated, NodeLinkError>.self,
        bufferingPolicy: .bufferingNewest(16)
    )
    let server = try await ServerBootstrap(group: .singletonMultiThreadedEventLoopGroup)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addParleyNodeLinkHandlers(
                    identity: identity,
                    role: .accepting(authorize: authorize),
                    configuration: LinkConfiguration(),
                    handshakeTimeout: handshakeTimeout
                )
                try channel.pipeline.syncOperations.addHandler(EchoHandler(outcomes: continuation))
            }
        }
        .bind(host: "127.0.0.1", port: 0).get()
    do {
        let port = try #require(server.localAddress?.port)
        try await body(Listener(port: port, outcomes: outcomes))
    } catch {
        try await server.close()
        continuation.finish()
        throw error
    }
    try await server.close()
    continuation.finish()
}

private func dial(
    _ listener: Listener,
    as identity: NodeIdentity,
    expecting peer: NodeID
) async throws -> (FrameChannel, NodeLinkHandshake) {
    try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup)
        .connect(host: "127.0.0.1", port: listener.port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let handshake = try channel.pipeline.syncOperations.addParleyNodeLinkHandlers(
                    identity: identity,
                    role: .dialling(expecting: peer),
                    configuration: LinkConfiguration()
                )
                return (try FrameChannel(wrappingChannelSynchronously: channel), handshake)
            }
        }
}

/// Connects to `listener` with a plain TLS client (not a Parley node) configured by `configuration`,
/// and returns once the listener has closed the connection.
private func dialWithPlainTLS(_ listener: Listener, _ configuration: TLSConfiguration) async throws {
    let context = try NIOSSLContext(configuration: configuration)
    let channel = try await ClientBootstrap(group: .singletonMultiThreadedEventLoopGroup)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    NIOSSLClientHandler(context: context, serverHostname: nil))
            }
        }
        .connect(host: "127.0.0.1", port: listener.port).get()
    try await channel.closeFuture.get()
}

/// Echoes every frame and reports the link's authentication outcome from the pipeline events.
private final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    private let outcomes: AsyncStream<Result<LinkAuthenticated, NodeLinkError>>.Continuation

    init(outcomes: AsyncStream<Result<LinkAuthenticated, NodeLinkError>>.Continuation) {
        self.outcomes = outcomes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let authenticated = event as? LinkAuthenticated {
            outcomes.yield(.success(authenticated))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NodeLinkError {
            outcomes.yield(.failure(error))
        }
        context.close(promise: nil)
    }
}
