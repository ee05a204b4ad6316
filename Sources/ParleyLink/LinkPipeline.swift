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
        if configuration.idleTimeoutWhileNotReading {
            try addHandler(KeepAliveHandler())
        } else {
            // Whether the socket waits for the peer's bytes is only known at the socket: first.
            let reads = SocketReadTracker()
            try addHandler(reads, position: .first)
            try addHandler(KeepAliveHandler(judgingIdleBy: reads))
        }
    }
}

/// Mirrors whether the channel has a read outstanding at its socket: sits first in the pipeline,
/// where every `read` that reaches the socket passes and every byte read arrives.
///
/// The channel does the same bookkeeping: a read asked for stays pending until bytes are read, and
/// a read asked for while those bytes are being delivered is pending again. Handlers further in
/// cannot tell: TLS may hand on decrypted bytes later, outside the socket's read (after its
/// certificate check, say), and a read asked for meanwhile never passes again.
final class SocketReadTracker: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    /// The socket waits for the peer's bytes.
    private(set) var readPending = false

    func read(context: ChannelHandlerContext) {
        readPending = true
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        readPending = false
        context.fireChannelRead(data)
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
    /// When set, the read idle timeout closes the link only while its socket waits for the peer's
    /// bytes, not while the handlers after this one hold its reads back
    /// (``LinkConfiguration/idleTimeoutWhileNotReading`` false).
    private let reads: SocketReadTracker?

    /// A handler whose idle timeout closes the link whenever the peer was silent that long.
    public init() {
        self.reads = nil
    }

    init(judgingIdleBy reads: SocketReadTracker) {
        self.reads = reads
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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
            guard reads?.readPending ?? true else { return }
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
