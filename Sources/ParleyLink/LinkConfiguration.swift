/// Limits and timers of one framed link, shared by client<->server and node<->node links.
public struct LinkConfiguration: Sendable, Hashable {
    /// The largest frame (length field value) accepted from the peer. Checked before buffering.
    public var maximumFrameSize: Int
    /// Send a PING after this long without writing anything.
    public var heartbeatInterval: Duration
    /// Close the link after this long without reading anything (the peer's PINGs count).
    public var idleTimeout: Duration

    public init(
        maximumFrameSize: Int = 1 << 20,
        heartbeatInterval: Duration = .seconds(30),
        idleTimeout: Duration = .seconds(90)
    ) {
        self.maximumFrameSize = maximumFrameSize
        self.heartbeatInterval = heartbeatInterval
        self.idleTimeout = idleTimeout
    }
}

extension Duration {
    /// Whole milliseconds, clamped to UInt32 (wire fields carry milliseconds).
    public var wireMilliseconds: UInt32 {
        let (seconds, attoseconds) = components
        let ms = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return UInt32(clamping: ms)
    }
}
