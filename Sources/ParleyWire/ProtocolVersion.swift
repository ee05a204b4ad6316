/// Constants of the wire protocol.
public enum WireProtocol {
    /// The value of `Hello.magic`.
    public static let magic = "parley"
    /// The protocol version this implementation speaks (the only one so far).
    public static let version: UInt32 = 1
    /// The HELLO capability for contact lists and presence events (docs/PROTOCOL.md section 23).
    public static let presenceCapability = "presence"
    /// The HELLO capability for custom commands (docs/PROTOCOL.md section 24).
    public static let commandsCapability = "commands"
    /// The HELLO capability for message history (docs/PROTOCOL.md section 25): the server keeps
    /// history and answers SEARCH_HISTORY.
    public static let historyCapability = "history"
    /// The HELLO capability for file transfer events (docs/PROTOCOL.md section 26).
    public static let filesCapability = "files"
    /// The default maximum frame size (length field value): 1 MiB.
    public static let defaultMaximumFrameSize = 1 << 20
    /// The most recipients one SEND_MESSAGE may name.
    public static let maximumRecipients = 256
}
