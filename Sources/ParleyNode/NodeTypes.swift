public import ParleyClient
public import ParleyCore
import ParleyLink

extension ParleyNode {
    /// The node's ID: SHA-256 of its public key, in base32 (`ParleyCore.NodeID`).
    public typealias NodeID = ParleyCore.NodeID

    /// How a node runs: where it keeps its data, who it is, and how it reaches others.
    public struct Configuration: Sendable {
        /// Holds the node key (`node-key.pem`) and the registry (`parley-node.sqlite`: user and
        /// node cache, pinned keys, durable outbox, seen message IDs).
        public var dataDirectory: String
        /// The user name shown on the LAN (discovery and NODE_HELLO), at most 64 characters.
        public var name: String
        /// The central server; nil runs the node in peer-to-peer mode (LAN only). With the default
        /// security (TLS, trust on first use), the node remembers the server's certificate in
        /// `known-servers` in ``dataDirectory``.
        public var server: ParleyClient.Configuration?
        /// The user ID and password to log on to the server with. Without a server, the user ID
        /// is still claimed on direct links (and checked by peers against the key pinned for it).
        public var credentials: Credentials?
        /// The address the direct-link listener binds. Default nil: every interface, IPv6 and
        /// IPv4 (one dual-stack socket on "::"), or IPv4 only ("0.0.0.0") where IPv6 is off.
        public var listenHost: String?
        /// The direct-link listener's port; 0 (the default) lets the system pick one.
        public var listenPort: Int = 0
        /// Whether this user accepts and opens direct links for user-addressed messages. False
        /// refuses incoming links and sends everything through the server (or the outbox).
        public var allowsDirectLinks: Bool = true
        /// A PING is sent on a direct link after this long without writing. Default 2 s.
        public var heartbeatInterval: Duration = .seconds(2)
        /// A direct link that received nothing for this long is closed, and its peer is shown
        /// offline unless a redial succeeds within ``redialTimeout``. Default 6 s (three missed
        /// heartbeats): a frozen peer is shown offline after about 8 s, a killed one (its sockets
        /// close) at once.
        public var peerTimeout: Duration = .seconds(6)

        /// How long the one redial after a peer's last link closed may take before the peer is
        /// shown offline. Default 2 s.
        public var redialTimeout: Duration = .seconds(2)

        /// How long the IDs of received messages are remembered to drop copies that arrive again
        /// by another route (a direct send whose acknowledgement was lost, then resent through
        /// the server), and of messages the outbox delivered (so enqueuing one again is a
        /// duplicate). Default 30 days; pruned about once an hour.
        public var seenRetention: Duration = .seconds(30 * 86_400)

        /// The most events ``ParleyNode/events`` holds for a slow reader. Past it, messages are
        /// held back (the server's stay with the server, a direct one is refused unacknowledged
        /// and its sender sends it another way) and other events are dropped. Default 65,536.
        public var unreadEventLimit = 65_536

        /// How long a message may wait in the outbox: past it, it is removed undelivered, with a
        /// ``ParleyNode/Event/queuedMessageExpired(_:to:)`` event (a message to a user or node
        /// that never shows up does not wait forever). Default ``defaultOutboxExpiry``, 7 days;
        /// checked every half ``peerTimeout`` (at least every 500 ms).
        public var outboxExpiry: Duration = Self.defaultOutboxExpiry

        /// 7 days.
        public static let defaultOutboxExpiry = Duration.seconds(7 * 86_400)

        public init(dataDirectory: String, name: String) {
            self.dataDirectory = dataDirectory
            self.name = name
        }
    }

    /// A user ID and password for the server.
    public struct Credentials: Sendable {
        public var userID: UserID
        public var password: String

        public init(userID: UserID, password: String) {
            self.userID = userID
            self.password = password
        }
    }

    /// Whom a message is for: a user (any route) or a node (direct links and the outbox only).
    public enum Recipient: Sendable, Hashable {
        case user(UserID)
        case node(NodeID)
    }

    /// How a message left (or will leave) this node.
    public enum Route: String, Sendable, Hashable, Codable {
        /// Over a direct link; the peer acknowledged it.
        case direct
        /// Through the server, which stored it durably.
        case server
        /// In the durable local outbox, to leave as soon as a route exists.
        case queued
    }

    /// The outcome of ``ParleyNode/send(_:to:id:)``.
    public struct SendResult: Sendable, Hashable {
        public var messageID: MessageID
        public var route: Route

        public init(messageID: MessageID, route: Route) {
            self.messageID = messageID
            self.route = route
        }
    }

    /// Another node as this node sees it.
    public struct PeerInfo: Sendable, Hashable {
        public var nodeID: NodeID
        /// The user the peer proved (NODE_HELLO) or advertised.
        public var userID: UserID?
        public var name: String
        /// "host:port" addresses from discovery.
        public var addresses: [String]
        /// The advertised presence token ("online"), or "offline".
        public var status: String
        /// Whether a direct link to it is open.
        public var linked: Bool
        /// Whether it is believed reachable: advertised or linked, and its last link did not die
        /// without a successful redial.
        public var online: Bool

        public init(
            nodeID: NodeID,
            userID: UserID?,
            name: String,
            addresses: [String],
            status: String,
            linked: Bool,
            online: Bool
        ) {
            self.nodeID = nodeID
            self.userID = userID
            self.name = name
            self.addresses = addresses
            self.status = status
            self.linked = linked
            self.online = online
        }
    }

    /// What happens on the node, in order.
    public enum Event: Sendable, Hashable {
        case peerUp(PeerInfo)
        case peerChanged(PeerInfo)
        case peerDown(NodeID)
        /// A message for this node's user (or node): `route` is ``Route/direct`` or
        /// ``Route/server``; `from` is the sending node when it came direct.
        case messageReceived(Message, from: NodeID?, route: Route)
        /// A direct link was refused: by this node (`byPeer` false: the peer's user claim does
        /// not match the key the server vouched for or the one pinned, for instance), or by the
        /// peer (`byPeer` true: this node does not dial it again for a while).
        case linkRefused(NodeID, ParleyError, byPeer: Bool)
        /// A message this node sent through the server reached the recipient (its application
        /// took it). Messages sent directly need no receipt: ``Route/direct`` means the peer
        /// acknowledged them.
        case deliveryReceipt(DeliveryReceipt)
        /// Messages to this recipient now leave by another route.
        case routeChanged(Recipient, Route)
        /// A message that waited in the outbox was refused for good when it left (the server
        /// does not know the recipient, say): it is removed from the outbox, not retried.
        case queuedMessageFailed(MessageID, to: Recipient, ParleyError)
        /// A message waited in the outbox longer than ``Configuration/outboxExpiry`` and was
        /// removed undelivered (to this recipient).
        case queuedMessageExpired(MessageID, to: Recipient)
        case serverConnection(ParleyClient.ConnectionState)
        /// The server refused the configured credentials (a wrong password, an unknown user):
        /// the node stays connected as a guest and does not retry until it is restarted.
        case serverLogOnFailed(ParleyError)
        /// The server refused the logon for a reason that may pass (the user's session from before
        /// a crash is still open, too many attempts, a server error): the node tries again after
        /// `retryAfter`, and keeps trying with growing delays.
        case serverLogOnDeferred(ParleyError, retryAfter: Duration)
        /// A contact's presence changed: from the server while logged on, from the LAN
        /// (``/ParleyCore/Presence/Source/lan``) while the server is unreachable. The first report
        /// of each contact comes once the node knows it (``ParleyNode/contactPresences()``).
        case contactPresence(UserID, Presence)
        /// A command for this node's user (or node), from a peer node over a direct link
        /// (`from` is that node) or through the server: shown whether or not a handler
        /// (``ParleyNode/handleCommands(named:_:)``) answered it. Dropped, like peer events, while
        /// ``Configuration/unreadEventLimit`` events wait unread.
        case commandReceived(Command, from: NodeID?, route: Route)
        /// A file another user sent is waiting on the server for this node's user
        /// (docs/PROTOCOL.md section 26), or another node offers one over a direct link (section
        /// 26.9; its sender waits for the answer, at most a minute): take it with
        /// ``ParleyNode/receiveFile(_:into:progress:)`` or decline it with
        /// ``ParleyNode/declineFile(_:reason:)``. One on the server is offered again after every
        /// logon until one of them is done.
        case fileOffered(FileOffer)
        /// One of this user's file transfers ended (the recipient has it, declined it, ...).
        case transferStatus(TransferStatus)
    }
}

/// What the server answered, or, while it cannot be asked, the node's cache (its registry): a
/// node keeps working with the server away.
public struct CachedAnswer<Value: Sendable>: Sendable {
    /// The answer.
    public var value: Value
    /// It came from the node's cache, not the server.
    public var isCached: Bool

    public init(_ value: Value, isCached: Bool) {
        self.value = value
        self.isCached = isCached
    }
}

extension CachedAnswer: Equatable where Value: Equatable {}
extension CachedAnswer: Hashable where Value: Hashable {}
