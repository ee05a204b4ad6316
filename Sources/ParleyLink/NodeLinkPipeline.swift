public import NIOCore
import NIOSSL
import NIOTLS
public import ParleyCore

/// Which side of a node-to-node link this end is, and whom it accepts at the other end.
public struct NodeLinkRole: Sendable {
    enum Kind: Sendable {
        case dialling(expected: NodeID)
        case accepting(authorize: @Sendable (NodeID, [UInt8]) -> Bool)
    }

    let kind: Kind

    /// This end connected and wants to reach `peer`; any other key at the far end is an impostor
    /// (``NodeLinkError/Code/impostor``).
    public static func dialling(expecting peer: NodeID) -> NodeLinkRole {
        NodeLinkRole(kind: .dialling(expected: peer))
    }

    /// This end accepted the connection. The dialler's certificate must be a self-signed one for
    /// a P-256 key; `authorize` then decides, from the node ID and the DER public key, whether that
    /// node may link (an allow-list, or trust on first use against a pin store).
    ///
    /// `authorize` runs on the channel's event loop in the middle of the handshake: it must answer
    /// at once from memory, and must not block.
    public static func accepting(
        authorize: @escaping @Sendable (_ peer: NodeID, _ publicKeyDER: [UInt8]) -> Bool
    ) -> NodeLinkRole {
        NodeLinkRole(kind: .accepting(authorize: authorize))
    }
}

/// The user event a node link fires into its pipeline once the TLS handshake has completed:
/// the peer proved it holds the key of ``peer``.
public struct LinkAuthenticated: Sendable, Hashable {
    /// The authenticated peer.
    public var peer: NodeID
    /// The peer's public key as DER SubjectPublicKeyInfo (what a pin store keeps).
    public var publicKeyDER: [UInt8]

    public init(peer: NodeID, publicKeyDER: [UInt8]) {
        self.peer = peer
        self.publicKeyDER = publicKeyDER
    }
}

/// The outcome of one node link's TLS handshake, for code that does not see pipeline events
/// (such as a user of `NIOAsyncChannel`).
public struct NodeLinkHandshake: Sendable {
    let result: EventLoopFuture<LinkAuthenticated>

    /// Waits for the handshake and returns the authenticated peer.
    ///
    /// In TLS 1.3 the dialling side finishes its handshake before the accepting side has judged
    /// its certificate: a dialler the acceptor refuses sees the link close right after this returns.
    ///
    /// - Throws: ``NodeLinkError`` when the handshake failed, timed out or the peer was refused.
    public func authenticatedPeer() async throws(NodeLinkError) -> LinkAuthenticated {
        do {
            return try await result.get()
        } catch let error as NodeLinkError {
            throw error
        } catch {
            throw NodeLinkError(code: .handshakeFailed, message: "the TLS handshake failed", cause: error)
        }
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds TLS 1.3 with mutual node authentication, then the framing handlers of every Parley link
    /// (``addParleyLinkHandlers(configuration:)``).
    ///
    /// Both ends present certificates bound to their ``NodeIdentity``; `role` decides which peer is
    /// acceptable. Once the handshake completes, a ``LinkAuthenticated`` user event travels through
    /// the handlers added later. A failed handshake closes the channel and fires a ``NodeLinkError``
    /// through `errorCaught`; no frame is ever read from an unauthenticated peer.
    ///
    /// - Parameters:
    ///   - identity: This node's key and certificate.
    ///   - role: Dialling (expecting one node) or accepting (with an authorization hook).
    ///   - configuration: The limits and timers of the framed link.
    ///   - handshakeTimeout: How long the TLS handshake may take before the link is closed.
    /// - Returns: The handshake's outcome, to await the authenticated peer.
    @discardableResult
    public func addParleyNodeLinkHandlers(
        identity: NodeIdentity,
        role: NodeLinkRole,
        configuration: LinkConfiguration,
        handshakeTimeout: Duration = .seconds(10)
    ) throws -> NodeLinkHandshake {
        let eventLoop = self.eventLoop
        let authentication = NodeLinkAuthenticationHandler(
            role: role,
            handshakeTimeout: TimeAmount(handshakeTimeout),
            promise: eventLoop.makePromise()
        )
        let verify: NIOSSLCustomVerificationCallback = { certificates, promise in
            promise.succeed(authentication.verify(certificates))
        }
        do {
            let tls: NIOSSLHandler
            switch role.kind {
            case .dialling:
                tls = try NIOSSLClientHandler(
                    context: identity.contexts.client,
                    serverHostname: nil,
                    customVerificationCallback: verify
                )
            case .accepting:
                tls = NIOSSLServerHandler(context: identity.contexts.server, customVerificationCallback: verify)
            }
            try addHandler(tls)
            try addHandler(authentication)
            try addParleyLinkHandlers(configuration: configuration)
        } catch {
            // The handler may never have joined the pipeline: its promise must not be left pending.
            authentication.abandon(because: error)
            throw error
        }
        return NodeLinkHandshake(result: authentication.result)
    }
}

/// Sits right after the TLS handler: judges the peer's certificate (through the verification
/// callback), bounds the handshake in time, and reports its outcome as an event, an error and
/// the ``NodeLinkHandshake`` future.
final class NodeLinkAuthenticationHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum State {
        case handshaking(verified: LinkAuthenticated?, rejection: NodeLinkError?)
        case authenticated
        case failed
    }

    private let role: NodeLinkRole
    private let handshakeTimeout: TimeAmount
    private let promise: EventLoopPromise<LinkAuthenticated>
    private var state = State.handshaking(verified: nil, rejection: nil)
    private var timeout: Scheduled<Void>?

    var result: EventLoopFuture<LinkAuthenticated> { promise.futureResult }

    init(role: NodeLinkRole, handshakeTimeout: TimeAmount, promise: EventLoopPromise<LinkAuthenticated>) {
        self.role = role
        self.handshakeTimeout = handshakeTimeout
        self.promise = promise
    }

    /// Called by the TLS handler on the event loop with the peer's certificates, leaf first.
    func verify(_ certificates: [NIOSSLCertificate]) -> NIOSSLVerificationResult {
        guard case .handshaking = state else { return .failed }
        do {
            let peer = try NodePeerCertificate.verify(certificates, role: role)
            state = .handshaking(verified: peer, rejection: nil)
            return .certificateVerified
        } catch {
            state = .handshaking(verified: nil, rejection: error)
            return .failed
        }
    }

    /// Fails the handshake when the pipeline could not be set up.
    func abandon(because error: any Error) {
        guard case .handshaking = state else { return }
        timeout?.cancel()
        state = .failed
        promise.fail(NodeLinkError(code: .handshakeFailed, message: "the link could not be set up", cause: error))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startTimer(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startTimer(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        if case .handshaking = state {
            state = .failed
            promise.fail(NodeLinkError(code: .handshakeFailed, message: "the link was torn down during the handshake"))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshaking(let verified, _) = state, let tlsEvent = event as? TLSUserEvent,
            case .handshakeCompleted = tlsEvent
        else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard let verified else {
            // The verification callback always runs before completion; never trust a peer it did not see.
            fail(NodeLinkError(code: .handshakeFailed, message: "the peer was never verified"), context: context)
            return
        }
        timeout?.cancel()
        state = .authenticated
        promise.succeed(verified)
        context.fireUserInboundEventTriggered(event)
        context.fireUserInboundEventTriggered(verified)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard case .handshaking(_, let rejection) = state else {
            context.fireErrorCaught(error)
            return
        }
        fail(
            rejection ?? NodeLinkError(code: .handshakeFailed, message: "the TLS handshake failed", cause: error),
            context: context
        )
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .handshaking(_, let rejection) = state {
            timeout?.cancel()
            state = .failed
            promise.fail(
                rejection
                    ?? NodeLinkError(code: .handshakeFailed, message: "the connection closed during the TLS handshake")
            )
        }
        context.fireChannelInactive()
    }

    private func startTimer(context: ChannelHandlerContext) {
        guard timeout == nil, case .handshaking = state else { return }
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [self] in
            guard case .handshaking = self.state else { return }
            self.fail(
                NodeLinkError(
                    code: .handshakeTimedOut,
                    message: "the TLS handshake took longer than \(self.handshakeTimeout)"
                ),
                context: context
            )
        }
    }

    private func fail(_ error: NodeLinkError, context: ChannelHandlerContext) {
        timeout?.cancel()
        state = .failed
        promise.fail(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension NodeLinkAuthenticationHandler: Sendable {}
