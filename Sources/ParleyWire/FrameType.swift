/// The 16-bit type field of a frame. See docs/PROTOCOL.md, "Frame types".
///
/// Requests use 0x0001-0x00FF, events 0x0100-0x01FF; the answer to a request has the request's
/// type with the high bit set (``FrameType/response``). ERROR answers any request.
public struct FrameType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    // Connection
    public static let hello = FrameType(rawValue: 0x0001)
    public static let error = FrameType(rawValue: 0x0003)
    public static let ping = FrameType(rawValue: 0x0004)
    public static let pong = FrameType(rawValue: 0x0005)

    // Accounts
    public static let register = FrameType(rawValue: 0x0010)
    public static let logOn = FrameType(rawValue: 0x0011)
    public static let logOff = FrameType(rawValue: 0x0012)

    // Directory
    public static let userExists = FrameType(rawValue: 0x0020)
    public static let userOnline = FrameType(rawValue: 0x0021)
    public static let getUserInfo = FrameType(rawValue: 0x0022)
    public static let findUserID = FrameType(rawValue: 0x0023)
    public static let findUsers = FrameType(rawValue: 0x0024)
    public static let updateUserInfo = FrameType(rawValue: 0x0025)
    public static let changePassword = FrameType(rawValue: 0x0026)

    // Messages
    public static let sendMessage = FrameType(rawValue: 0x0030)
    public static let ackMessages = FrameType(rawValue: 0x0031)

    // Contacts and presence (docs/PROTOCOL.md section 23)
    public static let getContacts = FrameType(rawValue: 0x0040)
    public static let addContact = FrameType(rawValue: 0x0041)
    public static let updateContact = FrameType(rawValue: 0x0042)
    public static let removeContact = FrameType(rawValue: 0x0043)
    public static let setPresence = FrameType(rawValue: 0x0044)

    // Custom commands (docs/PROTOCOL.md section 24)
    public static let sendCommand = FrameType(rawValue: 0x0050)
    public static let commandReply = FrameType(rawValue: 0x0051)

    // Message history (docs/PROTOCOL.md section 25)
    public static let searchHistory = FrameType(rawValue: 0x0060)
    // File and stream transfer (docs/PROTOCOL.md section 26)
    public static let transferStart = FrameType(rawValue: 0x0070)
    public static let transferChunk = FrameType(rawValue: 0x0071)
    public static let transferEnd = FrameType(rawValue: 0x0072)
    public static let transferRead = FrameType(rawValue: 0x0073)
    public static let transferClose = FrameType(rawValue: 0x0074)
    public static let listTransfers = FrameType(rawValue: 0x0075)

    // Events (server -> client, request ID 0)
    public static let message = FrameType(rawValue: 0x0101)
    public static let deliveryReceipt = FrameType(rawValue: 0x0102)
    public static let serverShutdown = FrameType(rawValue: 0x0103)
    public static let sessionReplaced = FrameType(rawValue: 0x0104)
    public static let presence = FrameType(rawValue: 0x0110)
    public static let command = FrameType(rawValue: 0x0120)
    public static let transferOffer = FrameType(rawValue: 0x0130)
    public static let transferStatus = FrameType(rawValue: 0x0131)

    // Node-to-node links (0x0200-0x02FF): only on TLS links between two nodes, never to a server.
    public static let nodeHello = FrameType(rawValue: 0x0201)
    public static let peerMessage = FrameType(rawValue: 0x0210)
    public static let peerCommand = FrameType(rawValue: 0x0220)
    // Direct file transfers between nodes (docs/PROTOCOL.md section 26.9).
    public static let peerTransferStart = FrameType(rawValue: 0x0230)
    public static let peerTransferChunk = FrameType(rawValue: 0x0231)
    public static let peerTransferEnd = FrameType(rawValue: 0x0232)
    public static let peerTransferClose = FrameType(rawValue: 0x0233)

    static let responseBit: UInt16 = 0x8000

    /// The type of the successful answer to this request type.
    public var response: FrameType { FrameType(rawValue: rawValue | Self.responseBit) }

    /// True for the successful answer to a request.
    public var isResponse: Bool { rawValue & Self.responseBit != 0 }

    /// For a response, the type of the request it answers.
    public var request: FrameType { FrameType(rawValue: rawValue & ~Self.responseBit) }

    public var description: String {
        let base: String
        switch FrameType(rawValue: rawValue & ~Self.responseBit) {
        case .hello: base = "HELLO"
        case .error: base = "ERROR"
        case .ping: base = "PING"
        case .pong: base = "PONG"
        case .register: base = "REGISTER"
        case .logOn: base = "LOGON"
        case .logOff: base = "LOGOFF"
        case .userExists: base = "USER_EXISTS"
        case .userOnline: base = "USER_ONLINE"
        case .getUserInfo: base = "GET_USER_INFO"
        case .findUserID: base = "FIND_USER_ID"
        case .findUsers: base = "FIND_USERS"
        case .updateUserInfo: base = "UPDATE_USER_INFO"
        case .changePassword: base = "CHANGE_PASSWORD"
        case .sendMessage: base = "SEND_MESSAGE"
        case .ackMessages: base = "ACK_MESSAGES"
        case .getContacts: base = "GET_CONTACTS"
        case .addContact: base = "ADD_CONTACT"
        case .updateContact: base = "UPDATE_CONTACT"
        case .removeContact: base = "REMOVE_CONTACT"
        case .setPresence: base = "SET_PRESENCE"
        case .sendCommand: base = "SEND_COMMAND"
        case .commandReply: base = "COMMAND_REPLY"
        case .command: base = "COMMAND"
        case .searchHistory: base = "SEARCH_HISTORY"
        case .peerCommand: base = "PEER_COMMAND"
        case .message: base = "MESSAGE"
        case .deliveryReceipt: base = "DELIVERY_RECEIPT"
        case .serverShutdown: base = "SERVER_SHUTDOWN"
        case .sessionReplaced: base = "SESSION_REPLACED"
        case .presence: base = "PRESENCE"
        case .nodeHello: base = "NODE_HELLO"
        case .transferStart: base = "TRANSFER_START"
        case .transferChunk: base = "TRANSFER_CHUNK"
        case .transferEnd: base = "TRANSFER_END"
        case .transferRead: base = "TRANSFER_READ"
        case .transferClose: base = "TRANSFER_CLOSE"
        case .listTransfers: base = "LIST_TRANSFERS"
        case .transferOffer: base = "TRANSFER_OFFER"
        case .transferStatus: base = "TRANSFER_STATUS"
        case .peerMessage: base = "PEER_MESSAGE"
        case .peerTransferStart: base = "PEER_TRANSFER_START"
        case .peerTransferChunk: base = "PEER_TRANSFER_CHUNK"
        case .peerTransferEnd: base = "PEER_TRANSFER_END"
        case .peerTransferClose: base = "PEER_TRANSFER_CLOSE"
        default: base = "0x" + String(rawValue & ~Self.responseBit, radix: 16)
        }
        return isResponse ? base + "_OK" : base
    }
}
