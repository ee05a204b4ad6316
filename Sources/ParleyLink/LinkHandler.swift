public import NIOCore
import NIOSSL
import ParleyCore
public import ParleyWire

/// The one handler every Parley link has: it cuts the byte stream into ``Frame``s and writes
/// frames with their length prefix, answers PINGs, sends PINGs when the link is quiet, closes it
/// when the peer goes silent, and answers a byte stream that cannot be framed with a fatal ERROR
/// frame before closing.
///
/// One handler rather than a chain of NIO's (a `ByteToMessageHandler`, an encoder, an
/// `IdleStateHandler`, a keep-alive handler): an idle connection then holds one pipeline context,
/// no buffer while no frame is half received, and one timer instead of two scheduled tasks with
/// their promises; and a write costs no promise for the idle bookkeeping (`IdleStateHandler`
/// makes one per write to see it complete). The server holds tens of thousands of such
/// connections.
///
/// Time is the event loop's (`EventLoop.now`), so an `EmbeddedEventLoop` drives the timers in
/// tests. A write counts when it is flushed; a read when its bytes were delivered
/// (`channelReadComplete`), as with `IdleStateHandler`.
public final class LinkHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = Frame
    public typealias OutboundIn = Frame
    public typealias OutboundOut = ByteBuffer

    // Stored properties in an order that packs them (a server holds tens of thousands of
    // links): the word-sized ones first, a one-byte flag in the last byte of each optional
    // buffer (23 bytes), the 32-bit ones and the last flags at the end. 146 bytes: one malloc
    // size class below what the same fields take in another order.

    private var decoder: FrameDecoder
    /// Takes the decoded frames instead of the next handler's `channelRead`, and hears of the
    /// link's events (``deliverFrames(to:)``).
    private var receiver: (any LinkFrameReceiver)?
    /// Where the link's deadline is kept (set while it is in a pipeline).
    private var timers: LinkTimers?
    private var context: ChannelHandlerContext?
    /// When set, the idle timeout closes the link only while its socket waits for the peer's
    /// bytes, not while the handlers after this one hold its reads back
    /// (``LinkConfiguration/idleTimeoutWhileNotReading`` false).
    private let reads: SocketReadTracker?
    private var lastRead = NIODeadline.uptimeNanoseconds(0)
    private var lastWrite = NIODeadline.uptimeNanoseconds(0)
    /// The start of a frame whose remaining bytes have not arrived yet; nil between frames.
    private var partial: ByteBuffer?
    private var state = State.active
    /// The frames written since the last flush, one after another, for one write at the flush
    /// (nil: none, or all were handed to the channel already). From ``OutboundBufferPool``.
    private var outbound: ByteBuffer?
    /// Frames are being handed on; bytes arriving meanwhile (re-entrantly) wait in `partial`.
    private var decoding = false
    /// In milliseconds (at most 49 days); zero: none.
    private let idleTimeoutMilliseconds: UInt32
    /// In milliseconds (at most 49 days); zero: none.
    private let heartbeatIntervalMilliseconds: UInt32
    /// The index of this link's entry in ``timers`` (-1: none).
    private var timerIndex: Int32 = -1
    /// The nonce of the next PING: 1, 2, 3... (docs/PROTOCOL.md section 12).
    private var nextNonce: UInt32 = 1
    /// Between a read's bytes and its `channelReadComplete`.
    private var reading = false
    /// Something was written since the last flush.
    private var wrote = false

    /// The index of this link's entry in its ``LinkTimers``, nil when it has no deadline; kept
    /// by ``LinkTimers``.
    var timerSlot: Int? {
        get { timerIndex < 0 ? nil : Int(timerIndex) }
        set { timerIndex = newValue.map { Int32($0) } ?? -1 }
    }

    private var idleTimeout: TimeAmount? {
        idleTimeoutMilliseconds > 0 ? .milliseconds(Int64(idleTimeoutMilliseconds)) : nil
    }
    private var heartbeatInterval: TimeAmount? {
        heartbeatIntervalMilliseconds > 0 ? .milliseconds(Int64(heartbeatIntervalMilliseconds)) : nil
    }

    /// `duration` in whole milliseconds, rounded up (a positive one at least 1), clamped to
    /// `UInt32`.
    private static func milliseconds(_ duration: Duration) -> UInt32 {
        guard duration > .zero else { return 0 }
        // Saturating (ParleyCore), so no duration traps; `- 1 ... + 1` rounds up.
        return UInt32(clamping: (duration.nanoseconds - 1) / 1_000_000 + 1)
    }

    private enum State {
        case active
        /// A framing error or the idle timeout closed the link: nothing more is decoded.
        case failed
        case inactive
    }

    /// A handler whose idle timeout closes the link whenever the peer was silent that long.
    public convenience init(configuration: LinkConfiguration) {
        self.init(configuration: configuration, judgingIdleBy: nil)
    }

    /// - Parameter timers: where the deadline is kept; by default the event loop's
    ///   (``LinkTimers/for(_:)``).
    init(configuration: LinkConfiguration, judgingIdleBy reads: SocketReadTracker?, timers: LinkTimers? = nil) {
        self.timers = timers
        self.decoder = FrameDecoder(maximumFrameSize: configuration.maximumFrameSize)
        self.idleTimeoutMilliseconds = Self.milliseconds(configuration.idleTimeout)
        self.heartbeatIntervalMilliseconds = Self.milliseconds(configuration.heartbeatInterval)
        self.reads = reads
    }

    // MARK: Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if timers == nil { timers = LinkTimers.for(context.eventLoop) }
        if context.channel.isActive { start(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        stopTimer()
        outbound = nil
        let receiver = self.receiver
        self.receiver = nil
        self.context = nil
        receiver?.linkRemoved()
    }

    /// Hands the frames this handler decodes to `receiver` instead of passing them on with
    /// `fireChannelRead`, which boxes every `Frame` on its way (a frame is too large for
    /// `NIOAny`'s inline storage), and tells it of the link's other events (the read's end,
    /// writability, ``LinkEvent``s, errors, the close, the handler's removal) before passing them
    /// on; it also decides whether a read may go on to the socket
    /// (``LinkFrameReceiver/linkShouldRead()``). So the receiver, a connection's session, needs
    /// no place in the pipeline of its own (a pipeline context per connection). This handler
    /// holds `receiver` until it is removed from the pipeline; nil: back to `fireChannelRead`.
    /// Only on the channel's event loop.
    public func deliverFrames(to receiver: (any LinkFrameReceiver)?) {
        self.receiver = receiver
    }

    /// What ``deliverFrames(to:)`` gave this handler, if anything.
    public var frameReceiver: (any LinkFrameReceiver)? { receiver }

    /// This handler's context, for a receiver (``deliverFrames(to:)``) that acts on the channel
    /// from the link's place: a read or a close it issues goes on towards the socket. Nil while
    /// the handler is not in a pipeline.
    public var channelContext: ChannelHandlerContext? { context }

    /// Writes out what was written since the last flush, as a flush through the pipeline would.
    public func flush() {
        guard let context else { return }
        flush(context: context)
    }

    public func read(context: ChannelHandlerContext) {
        if let receiver, !receiver.linkShouldRead() { return }
        context.read()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        receiver?.linkWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        receiver?.linkErrorCaught(error)
        context.fireErrorCaught(error)
    }

    /// Passes `event` to the receiver and on through the pipeline.
    private func raise(_ event: LinkEvent, context: ChannelHandlerContext) {
        receiver?.linkEvent(event)
        context.fireUserInboundEventTriggered(event)
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let wasActive = state == .active
        state = .inactive
        stopTimer()
        if wasActive, let partial, partial.readableBytes > 0 {
            // The peer closed in the middle of a frame.
            raise(
                .framingError(FrameDecodingError(.truncatedFrame(bufferedBytes: partial.readableBytes))),
                context: context)
        }
        partial = nil
        outbound = nil
        receiver?.linkInactive()
        context.fireChannelInactive()
    }

    private func start(context: ChannelHandlerContext) {
        guard timerSlot == nil, state == .active else { return }
        let now = context.eventLoop.now
        lastRead = now
        lastWrite = now
        scheduleTimer(now: now)
    }

    // MARK: Reading

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        guard state == .active else { return }
        var bytes = unwrapInboundIn(data)
        if var partial {
            self.partial = nil
            partial.writeBuffer(&bytes)
            bytes = partial
        }
        if decoding {
            // A handler after this one made the channel read while frames are handed on: the
            // loop below takes these bytes in turn.
            partial = bytes
            return
        }
        decoding = true
        defer { decoding = false }
        while state == .active {
            let frame: Frame?
            do {
                frame = try decoder.decode(buffer: &bytes)
            } catch let error as FrameDecodingError {
                fail(error, context: context)
                return
            } catch {
                errorCaught(context: context, error: error)
                return
            }
            if let frame {
                handle(frame, context: context)
                continue
            }
            // Bytes that came in while the frames were handed on.
            guard var more = partial else { break }
            partial = nil
            bytes.writeBuffer(&more)
        }
        if state == .active, bytes.readableBytes > 0 {
            partial = bytes
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if reading {
            reading = false
            lastRead = context.eventLoop.now
        }
        receiver?.linkReadComplete()
        context.fireChannelReadComplete()
    }

    private func handle(_ frame: Frame, context: ChannelHandlerContext) {
        switch frame.type {
        case .ping:
            // Echo the nonce; a PING with an unreadable meta still proves liveness.
            let ping = (try? frame.decodeMeta(as: Parley_V1_Ping.self)) ?? Parley_V1_Ping()
            writeAndFlush(Frame(type: .pong, requestID: frame.requestID, message: ping), context: context)
        case .pong:
            break
        default:
            if let receiver {
                receiver.linkReceived(frame)
            } else {
                context.fireChannelRead(wrapInboundOut(frame))
            }
        }
    }

    /// The stream can no longer be trusted: say why, then close.
    private func fail(_ error: FrameDecodingError, context: ChannelHandlerContext) {
        state = .failed
        partial = nil
        raise(.framingError(error), context: context)
        writeFinal(.error(error.parleyError, requestID: 0, fatal: true), context: context)
    }

    // MARK: Writing

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        write(unwrapOutboundIn(data), promise: promise)
    }

    /// Writes `frame` as if it had passed through ``write(context:data:promise:)``, for a handler
    /// after this one that holds this handler: a `Frame` written through the pipeline is boxed on
    /// its way (it is too large for `NIOAny`'s inline storage). Only on the channel's event loop.
    ///
    /// Frames without a promise and with a small payload are laid out one after another in one
    /// buffer that the flush writes; the others are handed to the channel at once, after what
    /// was laid out before them.
    public func write(_ frame: Frame, promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        wrote = true
        var frame = frame
        guard promise == nil, frame.payload.readableBytes <= FrameEncoder.coalescingLimit else {
            handOverOutbound(context: context)
            FrameEncoder.write(frame, context: context, promise: promise)
            return
        }
        appendOutbound(context: context) { buffer in
            buffer.reserveCapacity(minimumWritableBytes: Frame.lengthFieldSize + frame.length)
            FrameEncoder.writeHeader(of: &frame, into: &buffer)
            buffer.writeBuffer(&frame.payload)
        }
    }

    /// Writes a frame whose meta section `writeMeta` writes in place, as
    /// ``/ParleyWire/Frame/append(type:flags:requestID:payload:metaCapacity:to:meta:)`` lays it
    /// out: straight into the buffer the flush writes when the payload is small, so the frame
    /// costs no buffer of its own. Only on the channel's event loop.
    public func write(
        type: FrameType,
        flags: UInt16 = 0,
        requestID: UInt32,
        payload: ByteBuffer = ByteBuffer(),
        metaCapacity: Int,
        meta writeMeta: (inout ByteBuffer) -> Void
    ) {
        guard let context else { return }
        guard payload.readableBytes <= FrameEncoder.coalescingLimit else {
            write(
                Frame(
                    type: type, flags: flags, requestID: requestID, payload: payload, metaCapacity: metaCapacity,
                    meta: writeMeta))
            return
        }
        wrote = true
        appendOutbound(context: context) { buffer in
            Frame.append(
                type: type, flags: flags, requestID: requestID, payload: payload, metaCapacity: metaCapacity,
                to: &buffer, meta: writeMeta
            )
        }
    }

    /// Writes bytes that are already whole frames (a frame a handler after this one laid out
    /// itself, ``/ParleyWire/Frame/encoded(type:flags:requestID:payload:metaCapacity:allocator:meta:)``),
    /// as ``write(_:promise:)`` writes a frame. Only on the channel's event loop.
    public func write(encoded bytes: ByteBuffer, promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        wrote = true
        handOverOutbound(context: context)
        context.write(wrapOutboundOut(bytes), promise: promise)
    }

    public func flush(context: ChannelHandlerContext) {
        if wrote {
            wrote = false
            lastWrite = context.eventLoop.now
        }
        guard var buffer = outbound else {
            context.flush()
            return
        }
        outbound = nil
        context.write(wrapOutboundOut(buffer), promise: nil)
        context.flush()
        // Written out by now, unless the socket is full: then the channel keeps it.
        OutboundBufferPool.current.give(&buffer)
    }

    /// Runs `body` on the buffer of frames waiting for the flush (a pooled one if there is none
    /// yet), which is uniquely held meanwhile, so writing to it copies nothing.
    private func appendOutbound(context: ChannelHandlerContext, _ body: (inout ByteBuffer) -> Void) {
        var buffer = outbound ?? OutboundBufferPool.current.take(allocator: context.channel.allocator)
        outbound = nil
        body(&buffer)
        outbound = buffer
    }

    /// Hands the frames waiting for the flush to the channel now, ahead of a write that cannot
    /// join them (one with a promise or a large payload), so the order holds.
    private func handOverOutbound(context: ChannelHandlerContext) {
        guard let buffer = outbound else { return }
        outbound = nil
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    /// Writes a frame of this handler's own (PONG, PING, a last ERROR) and flushes it.
    private func writeAndFlush(_ frame: Frame, context: ChannelHandlerContext) {
        write(frame)
        flush(context: context)
    }

    /// Sends a last frame and closes at once. The flush hands the frame to the socket right away
    /// when it can take it; a peer that stops reading would keep the write, and so the close,
    /// pending forever.
    private func writeFinal(_ frame: Frame, context: ChannelHandlerContext) {
        writeAndFlush(frame, context: context)
        context.close(promise: nil)
    }

    /// Closes a link whose peer went silent. Behind TLS, a close waits for the peer's close_notify
    /// (up to the TLS shutdown timeout, 5 s) and a silent peer sends none: the close is issued
    /// below the TLS handler instead, so the link ends at the idle timeout. The ERROR frame was
    /// flushed first and goes out if the socket takes it.
    private func closeWithoutTheSilentPeer(context: ChannelHandlerContext) {
        if let tls = try? context.pipeline.syncOperations.context(handlerType: NIOSSLHandler.self) {
            tls.close(promise: nil)
        } else {
            context.close(promise: nil)
        }
    }

    // MARK: Timers

    /// One timer for both timeouts, set for whichever falls due first. A read or write moves a
    /// deadline later without touching the timer: when it fires early, it is set again.
    private func scheduleTimer(now: NIODeadline) {
        var deadline: NIODeadline?
        if let idleTimeout { deadline = lastRead + idleTimeout }
        if let heartbeatInterval { deadline = min(deadline ?? .distantFuture, lastWrite + heartbeatInterval) }
        guard var deadline else { return }
        // Never in the past: a deadline just missed fires on the next tick.
        deadline = max(deadline, now)
        timers?.set(self, at: deadline)
    }

    private func stopTimer() {
        timers?.remove(self)
    }

    /// This link's deadline passed (called by ``LinkTimers``, which removed it first).
    func timerFired() {
        guard let context, state == .active else { return }
        let now = context.eventLoop.now
        if let idleTimeout, !reading, now - lastRead >= idleTimeout {
            if reads?.readPending ?? true {
                let error = ParleyError(code: .idleTimeout, message: "nothing received within the idle timeout")
                state = .failed
                raise(.idleTimeout, context: context)
                writeAndFlush(.error(error, requestID: 0, fatal: true), context: context)
                closeWithoutTheSilentPeer(context: context)
                return
            }
            // Nothing was read because nothing was asked for: the peer is not the silent one.
            // The peer gets a whole idle timeout again from now.
            lastRead = now
        }
        if let heartbeatInterval, now - lastWrite >= heartbeatInterval {
            var ping = Parley_V1_Ping()
            ping.nonce = UInt64(nextNonce)
            nextNonce &+= 1
            writeAndFlush(Frame(type: .ping, requestID: 0, message: ping), context: context)
        }
        guard state == .active, context.channel.isActive else { return }
        scheduleTimer(now: now)
    }
}

/// Events ``LinkHandler`` passes on to the handlers after it.
public enum LinkEvent: Sendable {
    /// The peer sent nothing within the idle timeout; the link is being closed.
    case idleTimeout
    /// The byte stream could not be framed; the link is being closed.
    case framingError(FrameDecodingError)
}

/// Takes the frames a ``LinkHandler`` decodes, and hears of the link's other events, when given
/// to ``LinkHandler/deliverFrames(to:)``. Everything is called on the channel's event loop, before
/// the event goes on through the pipeline; all but ``linkReceived(_:)`` have defaults that do
/// nothing (and let every read through).
public protocol LinkFrameReceiver: AnyObject {
    /// A frame from the peer (not PING or PONG, which the link answers itself), as
    /// `channelRead` would have had it.
    func linkReceived(_ frame: Frame)
    /// The channel's read completed (its frames were handed over).
    func linkReadComplete()
    /// The channel's outbound queue went over (false) or under (true) its high-water mark.
    func linkWritabilityChanged(_ writable: Bool)
    /// The link closes: the peer was silent, or its bytes could not be framed.
    func linkEvent(_ event: LinkEvent)
    /// An error reached the link from the channel, or a frame could not be decoded.
    func linkErrorCaught(_ error: any Error)
    /// The channel went inactive.
    func linkInactive()
    /// The link's handler left the pipeline (after the close); it holds the receiver no longer.
    func linkRemoved()
    /// Whether a read the channel asks for may go on to the socket now. A receiver that says
    /// no asks for it later itself (`read()` on ``LinkHandler/channelContext``).
    func linkShouldRead() -> Bool
}

extension LinkFrameReceiver {
    public func linkReadComplete() {}
    public func linkWritabilityChanged(_ writable: Bool) {}
    public func linkEvent(_ event: LinkEvent) {}
    public func linkErrorCaught(_ error: any Error) {}
    public func linkInactive() {}
    public func linkRemoved() {}
    public func linkShouldRead() -> Bool { true }
}
