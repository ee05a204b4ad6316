import Foundation
import ParleyClient
import ParleyCore
import ParleyLink
import ParleyNode

/// One line of `parley node` output: an event of the node, or the result of a command read from
/// standard input. With `--json` every line is one object whose `event` says which kind it is;
/// fields that do not apply are left out.
struct NodeEventRecord: Encodable {
    var event: String
    var nodeID: String?
    var name: String?
    var port: Int?
    var pid: Int?
    var userID: UInt32?
    var addresses: [String]?
    var status: String?
    var linked: Bool?
    var online: Bool?
    // A received message (`message`), as `receive` prints it plus how it came.
    var id: UInt64?
    var sender: UInt32?
    var recipients: [UInt32]?
    var kind: String?
    var text: String?
    var base64: String?
    var sentAt: Date?
    var deliveredAt: Date?
    var fromNode: String?
    var route: String?
    /// A message handed over again after a crash: it may repeat an earlier line (same `id`).
    var redelivered: Bool?
    // `routeChanged` and `sent`: who the route or message is for.
    var toUser: UInt32?
    var toNode: String?
    var messageID: UInt64?
    // `server`: the state of the connection to the server.
    var state: String?
    var reason: String?
    /// `presence`: where a contact's presence comes from ("server" or "lan").
    var source: String?
    /// `server` with state `logOnDeferred`: when the node tries again.
    var retryAfterMs: Int?
    // Command results.
    var user: UserRecord?
    var users: [UserRecord]?
    var truncated: Bool?
    var byPeer: Bool?
    var cached: Bool?
    var peers: [NodeEventRecord]?
    var contacts: [NodeEventRecord]?
    var command: String?
    var message: String?

    private init(event: String) {
        self.event = event
    }

    /// `{"event":"started","nodeID":...,"name":...,"port":...,"pid":...}`
    static func started(nodeID: NodeID, name: String, port: Int) -> NodeEventRecord {
        var record = NodeEventRecord(event: "started")
        record.nodeID = nodeID.description
        record.name = name
        record.port = port
        record.pid = Int(ProcessInfo.processInfo.processIdentifier)
        return record
    }

    /// `{"event":"stopped"}`, the last line of a node that shut down.
    static var stopped: NodeEventRecord { NodeEventRecord(event: "stopped") }

    /// `{"event":"sent","messageID":...,"route":...,"toUser"|"toNode":...}`
    static func sent(_ result: ParleyNode.SendResult, to recipient: ParleyNode.Recipient) -> NodeEventRecord {
        var record = NodeEventRecord(event: "sent")
        record.messageID = result.messageID.rawValue
        record.route = result.route.rawValue
        record.setRecipient(recipient)
        return record
    }

    /// `{"event":"whois","cached":...,"user":{...}}`
    static func whois(_ info: UserInfo, cached: Bool) -> NodeEventRecord {
        var record = NodeEventRecord(event: "whois")
        record.user = UserRecord(info)
        record.cached = cached
        return record
    }

    /// `{"event":"found","cached":...,"truncated":...,"users":[{...}]}`
    static func found(_ result: UserSearchResult, cached: Bool) -> NodeEventRecord {
        var record = NodeEventRecord(event: "found")
        record.users = result.users.map(UserRecord.init)
        record.truncated = result.truncated
        record.cached = cached
        return record
    }

    /// `{"event":"peers","peers":[{"event":"peer",...}]}`
    static func peers(_ peers: [ParleyNode.PeerInfo]) -> NodeEventRecord {
        var record = NodeEventRecord(event: "peers")
        record.peers = peers.sorted { $0.nodeID < $1.nodeID }.map { peer("peer", $0) }
        return record
    }

    /// `{"event":"status","status":...}`: the presence the node now advertises.
    static func status(_ status: String) -> NodeEventRecord {
        var record = NodeEventRecord(event: "status")
        record.status = status
        return record
    }

    /// `{"event":"commandReply","command":NAME,"route":...,"text":...}`: the reply to a command.
    static func commandReply(_ name: String, _ result: ParleyNode.CommandResult) -> NodeEventRecord {
        var record = NodeEventRecord(event: "commandReply")
        record.command = name
        record.route = result.route.rawValue
        (record.text, record.base64) = CommandRecord.content(of: result.reply)
        return record
    }

    /// `{"event":"handling","command":NAME}`: the node answers commands named NAME.
    static func handling(_ name: String) -> NodeEventRecord {
        var record = NodeEventRecord(event: "handling")
        record.command = name
        return record
    }

    /// `{"event":"contact","userID":...,"name":...,"state":...,"text":...,"source":...}`: a contact
    /// and its presence as the node knows it.
    static func contact(_ contact: Contact, presence: Presence?, cached: Bool?) -> NodeEventRecord {
        var record = NodeEventRecord(event: "contact")
        record.userID = contact.userID.rawValue
        record.name = contact.name
        record.state = presence?.state.rawValue
        record.text = presence?.text
        record.source = presence?.source.rawValue
        record.cached = cached
        return record
    }

    /// `{"event":"contacts","contacts":[...],"cached":...}`
    static func contacts(_ contacts: [NodeEventRecord], cached: Bool) -> NodeEventRecord {
        var record = NodeEventRecord(event: "contacts")
        record.contacts = contacts
        record.cached = cached
        return record
    }

    /// `{"event":"error","command":...,"message":...}`
    static func error(_ message: String, command: String? = nil) -> NodeEventRecord {
        var record = NodeEventRecord(event: "error")
        record.command = command
        record.message = message
        return record
    }

    init(_ event: ParleyNode.Event) {
        switch event {
        case .peerUp(let info):
            self.init(event: "peerUp")
            setPeer(info)
        case .peerChanged(let info):
            self.init(event: "peerChanged")
            setPeer(info)
        case .peerDown(let nodeID):
            self.init(event: "peerDown")
            self.nodeID = nodeID.description
        case .messageReceived(let message, let from, let route):
            self.init(event: "message")
            id = message.id.rawValue
            sender = message.sender.rawValue
            recipients = message.recipients.map(\.rawValue)
            sentAt = message.sentAt
            deliveredAt = message.deliveredAt
            fromNode = from?.description
            self.route = route.rawValue
            (kind, text, base64) = MessageRecord.fields(of: message.body)
        case .routeChanged(let recipient, let route):
            self.init(event: "routeChanged")
            setRecipient(recipient)
            self.route = route.rawValue
        case .linkRefused(let node, let error, let byPeer):
            self.init(event: "linkRefused")
            nodeID = node.description
            message = ErrorText.describe(error)
            self.byPeer = byPeer
        case .deliveryReceipt(let receipt):
            self.init(event: "receipt")
            messageID = receipt.messageID.rawValue
            toUser = receipt.recipient.rawValue
            deliveredAt = receipt.acknowledgedAt
        case .queuedMessageFailed(let id, let recipient, let error):
            self.init(event: "queuedMessageFailed")
            messageID = id.rawValue
            setRecipient(recipient)
            message = ErrorText.describe(error)
        case .queuedMessageExpired(let id, let recipient):
            self.init(event: "queuedMessageExpired")
            messageID = id.rawValue
            setRecipient(recipient)
        case .serverLogOnFailed(let error):
            self.init(event: "server")
            state = "logOnFailed"
            reason = ErrorText.describe(error)
        case .serverLogOnDeferred(let error, let delay):
            self.init(event: "server")
            state = "logOnDeferred"
            reason = ErrorText.describe(error)
            retryAfterMs = Int(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)
        case .contactPresence(let user, let presence):
            self.init(event: "presence")
            userID = user.rawValue
            state = presence.state.rawValue
            text = presence.text
            source = presence.source.rawValue
        case .commandReceived(let command, let from, let route):
            self.init(event: "command")
            self.command = command.name
            sender = command.sender.rawValue
            fromNode = from?.description
            self.route = route.rawValue
            (text, base64) = CommandRecord.content(of: command.payload)
        case .fileOffered(let offer):
            self.init(event: "fileOffered")
            id = offer.id.rawValue
            sender = offer.sender.rawValue
            text = offer.name
        case .transferStatus(let status):
            self.init(event: "transferStatus")
            id = status.id.rawValue
            toUser = status.recipient.rawValue
            state = status.outcome.rawValue
            reason = status.reason
        case .serverConnection(let connection):
            self.init(event: "server")
            switch connection {
            case .connecting:
                state = "connecting"
            case .connected:
                state = "connected"
            case .loggedOn(let user):
                state = "loggedOn"
                userID = user.rawValue
            case .disconnected(let error):
                state = "disconnected"
                reason = error?.description
            case .stopped:
                state = "stopped"
            }
        }
    }

    private static func peer(_ event: String, _ info: ParleyNode.PeerInfo) -> NodeEventRecord {
        var record = NodeEventRecord(event: event)
        record.setPeer(info)
        return record
    }

    private mutating func setPeer(_ info: ParleyNode.PeerInfo) {
        nodeID = info.nodeID.description
        userID = info.userID?.rawValue
        name = info.name
        addresses = info.addresses
        status = info.status
        linked = info.linked
        online = info.online
    }

    private mutating func setRecipient(_ recipient: ParleyNode.Recipient) {
        switch recipient {
        case .user(let user): toUser = user.rawValue
        case .node(let node): toNode = node.description
        }
    }

    /// The readable form (without `--json`); may span several lines for `peers`.
    var line: String {
        switch event {
        case "started":
            return "node \(nodeID ?? "?") (\(name ?? "")) accepts direct links on port \(port.map(String.init) ?? "?")"
        case "stopped":
            return "node stopped"
        case "peerUp", "peerChanged", "peer":
            let what = event == "peerUp" ? "peer up: " : event == "peerChanged" ? "peer changed: " : ""
            return what + peerLine
        case "peerDown":
            return "peer down: node \(nodeID ?? "?")"
        case "message":
            return "[from \(sender.map(String.init) ?? "?") via \(route ?? "?")] \(content)"
        case "routeChanged":
            return "route to \(recipientText): \(route ?? "?")"
        case "linkRefused":
            let node = nodeID ?? "?"
            let who = byPeer == true ? "node \(node) refused this node's link" : "refused node \(node)"
            return "\(who): \(message ?? "?")"
        case "receipt":
            return "delivered \(messageID.map(String.init) ?? "?") to \(recipientText)"
        case "queuedMessageFailed":
            return "queued message \(messageID.map(String.init) ?? "?") to \(recipientText) refused: \(message ?? "?")"
        case "queuedMessageExpired":
            return "queued message \(messageID.map(String.init) ?? "?") to \(recipientText) expired undelivered"
        case "server":
            switch state {
            case "loggedOn": return "server: logged on as \(userID.map(String.init) ?? "?")"
            case "disconnected": return "server: disconnected" + (reason.map { " (\($0))" } ?? "")
            case "logOnFailed": return "server: logging on failed (\(reason ?? "?"))"
            case "logOnDeferred":
                let seconds = Double(retryAfterMs ?? 0) / 1000
                return "server: logging on failed (\(reason ?? "?")); trying again in \(seconds) s"
            default: return "server: \(state ?? "?")"
            }
        case "contact":
            return "contact \(userID.map(String.init) ?? "?") \(name ?? "") \(presenceText)"
        case "contacts":
            let lines = (contacts ?? []).map(\.line)
            let note = cached == true ? " (from the node's cache)" : ""
            return lines.isEmpty ? "no contacts" + note : lines.joined(separator: "\n") + note
        case "presence":
            return "contact \(userID.map(String.init) ?? "?") is \(presenceText)"
        case "sent":
            return "sent \(messageID.map(String.init) ?? "?") to \(recipientText) via \(route ?? "?")"
        case "status":
            return "status: \(status ?? "?")"
        case "whois":
            return (user?.line ?? "?") + (cached == true ? " (from the node's cache)" : "")
        case "found":
            let lines = (users ?? []).map(\.line) + (truncated == true ? ["(more users match)"] : [])
            let note = cached == true ? " (from the node's cache)" : ""
            return lines.isEmpty ? "no users found" + note : lines.joined(separator: "\n") + note
        case "peers":
            let lines = (peers ?? []).map(\.line)
            return lines.isEmpty ? "no peers" : lines.joined(separator: "\n")
        case "error":
            return "error: " + (command.map { "\($0): " } ?? "") + (message ?? "")
        case "command":
            return "[command \(command ?? "?") from \(sender.map(String.init) ?? "?") via \(route ?? "?")] \(content)"
        case "commandReply":
            return "reply to \(command ?? "?") via \(route ?? "?"): \(content)"
        case "handling":
            return "answering command \(command ?? "?") with its payload"
        case "fileOffered":
            return
                "file \(text ?? "?") from \(sender.map(String.init) ?? "?") waits on the server (transfer \(id ?? 0))"
        case "transferStatus":
            return "transfer \(id ?? 0) to \(recipientText): \(state ?? "?") \(reason ?? "")"
        default:
            return event
        }
    }

    /// "away (at lunch)", "offline [lan]": a presence as ``/ParleyCore/Presence`` describes it.
    private var presenceText: String {
        let said = text.map { $0.isEmpty ? "" : " (\($0))" } ?? ""
        return "\(state ?? "?")\(said)" + (source == "lan" ? " [lan]" : "")
    }

    private var peerLine: String {
        let user = userID.map { "user \($0)" } ?? "no user"
        let at = (addresses ?? []).joined(separator: ", ")
        var flags = [status ?? ""]
        // The advertised status is often "online" itself: say it once.
        if online == true, status != "online" { flags.append("online") }
        if linked == true { flags.append("linked") }
        let state = flags.filter { !$0.isEmpty }.joined(separator: ", ")
        return "\(name ?? "?") (\(user)) node \(nodeID ?? "?") at \(at.isEmpty ? "?" : at)"
            + (state.isEmpty ? "" : " [\(state)]")
    }

    private var recipientText: String {
        if let toUser { return "user \(toUser)" }
        return "node \(toNode ?? "?")"
    }

    /// Text with line breaks escaped, so one message stays one line; binary as base64.
    private var content: String { MessageRecord.content(text: text, base64: base64) }
}
