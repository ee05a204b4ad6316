/// Limits and timers of one framed link, shared by client<->server and node<->node links.
public struct LinkConfiguration: Sendable, Hashable {
    /// The largest frame (length field value) accepted from the peer. Checked before buffering.
    public var maximumFrameSize: Int
    /// Send a PING after this long without writing anything.
    public var heartbeatInterval: Duration
    /// Close the link after this long without reading anything (the peer's PINGs count).
    public var idleTimeout: Duration
    /// Whether the idle timeout also runs while this side has stopped reading (backpressure: the
    /// handlers after the framing hold the socket's reads back). When false, a link is judged
    /// idle only while this side wants to read: a peer whose frames wait unread is not silent.
    public var idleTimeoutWhileNotReading: Bool

    public init(
        maximumFrameSize: Int = 1 << 20,
        heartbeatInterval: Duration = .seconds(30),
        idleTimeout: Duration = .seconds(90),
        idleTimeoutWhileNotReading: Bool = true
    ) {
        self.maximumFrameSize = maximumFrameSize
        self.heartbeatInterval = heartbeatInterval
        self.idleTimeout = idleTimeout
        self.idleTimeoutWhileNotReading = idleTimeoutWhileNotReading
    }
}

extension Duration {
    /// Whole milliseconds, clamped to UInt32 (wire fields carry milliseconds).
    public var wireMilliseconds: UInt32 {
        UInt32(clamping: nanoseconds / 1_000_000)
    }
}
