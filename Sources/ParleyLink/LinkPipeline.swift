public import NIOCore
import ParleyCore
public import ParleyWire

extension ChannelPipeline.SynchronousOperations {
    /// Adds the framing, keep-alive and framing-error handlers every Parley link uses.
    ///
    /// After these, the channel reads and writes ``Frame``s. PING/PONG never reach handlers
    /// added later; a byte stream that cannot be framed gets a fatal ERROR frame and is closed.
    public func addParleyLinkHandlers(configuration: LinkConfiguration) throws {
        try addHandler(
            ByteToMessageHandler(
                FrameDecoder(maximumFrameSize: configuration.maximumFrameSize),
                maximumBufferSize: configuration.maximumFrameSize + Frame.lengthFieldSize
            )
        )
        try addHandler(FrameEncoder())
        try addHandler(
            IdleStateHandler(
                readTimeout: TimeAmount(configuration.idleTimeout),
                writeTimeout: TimeAmount(configuration.heartbeatInterval)
            )
        )
        try addHandler(KeepAliveHandler(idleWhileNotReading: configuration.idleTimeoutWhileNotReading))
    }
}

/// Answers PINGs, sends PINGs when the link is quiet, closes it when the peer goes silent,
/// and turns framing errors into a fatal ERROR frame before closing.
public final class KeepAliveHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = Frame
    public typealias InboundOut = Frame
    public typealias OutboundIn = Frame
    public typealias OutboundOut = Frame

    private var nextNonce: UInt64 = 1
    private let idleWhileNotReading: Bool
    /// A read was asked for (it passed this handler towards the socket) and has not completed:
    /// this side wants the peer's bytes.
    private var wantsToRead = false
    /// Bytes of a read are being delivered (between the first channelRead and channelReadComplete).
    private var delivering = false
    /// A read was asked for while one was being delivered: it is served after this one completes,
    /// so that completion must not clear ``wantsToRead`` (a silent peer would never be judged idle).
    private var askedWhileDelivering = false

    /// - Parameter idleWhileNotReading: Whether the read idle timeout closes the link while the
    ///   handlers after this one hold its reads back (``LinkConfiguration/idleTimeoutWhileNotReading``).
    public init(idleWhileNotReading: Bool = true) {
        self.idleWhileNotReading = idleWhileNotReading
    }

    /// Notes that this side asks for the peer's bytes, and passes the read on.
    public func read(context: ChannelHandlerContext) {
        wantsToRead = true
        if delivering { askedWhileDelivering = true }
        context.read()
    }

    /// Notes that the read asked for is done; the next is asked for unless a handler after this
    /// one holds it back.
    public func channelReadComplete(context: ChannelHandlerContext) {
        if !askedWhileDelivering { wantsToRead = false }
        askedWhileDelivering = false
        delivering = false
        context.fireChannelReadComplete()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        delivering = true
        let frame = unwrapInboundIn(data)
        switch frame.type {
        case .ping:
            // Echo the nonce; a PING with an unreadable meta still proves liveness.
            let ping = (try? frame.decodeMeta(as: Parley_V1_Ping.self)) ?? Parley_V1_Ping()
            context.writeAndFlush(
                wrapOutboundOut(Frame(type: .pong, requestID: frame.requestID, message: ping)),
                promise: nil
            )
        case .pong:
            break
        default:
            context.fireChannelRead(data)
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let idle = event as? IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        switch idle {
        case .write:
            var ping = Parley_V1_Ping()
            ping.nonce = nextNonce
            nextNonce &+= 1
            context.writeAndFlush(wrapOutboundOut(Frame(type: .ping, requestID: 0, message: ping)), promise: nil)
        case .read:
            // Nothing was read because nothing was asked for: the peer is not the silent one.
            guard idleWhileNotReading || wantsToRead else { return }
            let error = ParleyError(code: .idleTimeout, message: "nothing received within the idle timeout")
            context.fireUserInboundEventTriggered(LinkEvent.idleTimeout)
            writeFinal(.error(error, requestID: 0, fatal: true), context: context)
        case .all:
            break
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let decoding = error as? FrameDecodingError {
            // The stream can no longer be trusted: say why, then close.
            context.fireUserInboundEventTriggered(LinkEvent.framingError(decoding))
            if case .truncatedFrame = decoding.reason {
                context.close(promise: nil)
                return
            }
            writeFinal(.error(decoding.parleyError, requestID: 0, fatal: true), context: context)
            return
        }
        context.fireErrorCaught(error)
    }

    /// Sends a last frame and closes at once. The flush hands the frame to the socket right away
    /// when it can take it; a peer that stops reading would keep the write, and so the close,
    /// pending forever.
    private func writeFinal(_ frame: Frame, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        context.close(promise: nil)
    }
}

/// Events ``KeepAliveHandler`` passes on to the handlers after it.
public enum LinkEvent: Sendable {
    /// The peer sent nothing within the idle timeout; the link is being closed.
    case idleTimeout
    /// The byte stream could not be framed; the link is being closed.
    case framingError(FrameDecodingError)
}
