public import NIOCore
import ParleyCore
import ParleyWire

extension ChannelPipeline.SynchronousOperations {
    /// Adds the ``LinkHandler`` every Parley link uses (framing, keep-alive, framing errors),
    /// with a `SocketReadTracker` first when the idle timeout counts only while reading.
    ///
    /// After these, the channel reads and writes ``Frame``s. PING/PONG never reach handlers
    /// added later; a byte stream that cannot be framed gets a fatal ERROR frame and is closed.
    public func addParleyLinkHandlers(configuration: LinkConfiguration) throws {
        if configuration.idleTimeoutWhileNotReading {
            try addHandler(LinkHandler(configuration: configuration))
        } else {
            // Whether the socket waits for the peer's bytes is only known at the socket: first.
            let reads = SocketReadTracker()
            try addHandler(reads, position: .first)
            try addHandler(LinkHandler(configuration: configuration, judgingIdleBy: reads))
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
