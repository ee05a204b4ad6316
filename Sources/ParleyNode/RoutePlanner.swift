import ParleyCore

/// What the router knows about one recipient when a message is about to leave.
struct RouteSituation: Sendable, Hashable {
    enum Direct: Sendable, Hashable {
        /// A direct link to the recipient's node is open.
        case linked
        /// The recipient's node is known with addresses: a link can be opened.
        case dialable
        /// No node, or no address, is known.
        case unavailable
    }

    /// A node recipient (peer-to-peer mode) never goes through the server.
    var recipientIsNode: Bool
    /// Earlier messages to the same recipient still wait in the outbox: this one must wait behind
    /// them, or it would overtake them.
    var hasQueuedMessages: Bool
    var direct: Direct
    /// This user and the recipient both allow direct links (always true for node recipients).
    var directAllowed: Bool
    /// The server connection is up and logged on.
    var serverLoggedOn: Bool
}

/// Decides, without I/O, the routes to try for one message, in order. The caller tries each until
/// one succeeds; the last one, ``ParleyNode/Route/queued``, cannot fail short of a storage error.
enum RoutePlanner {
    static func plan(_ situation: RouteSituation) -> [ParleyNode.Route] {
        if situation.hasQueuedMessages { return [.queued] }
        var routes: [ParleyNode.Route] = []
        if situation.direct != .unavailable, situation.directAllowed || situation.recipientIsNode {
            routes.append(.direct)
        }
        if !situation.recipientIsNode, situation.serverLoggedOn {
            routes.append(.server)
        }
        routes.append(.queued)
        return routes
    }

    /// The routes the outbox tries for a waiting message: the same order without the outbox itself.
    static func planFlush(_ situation: RouteSituation) -> [ParleyNode.Route] {
        var queued = situation
        queued.hasQueuedMessages = false
        return plan(queued).filter { $0 != .queued }
    }
}

/// The route each recipient's messages took last, so that the node reports a change
/// (``ParleyNode/Event/routeChanged(_:_:)``) and not every message.
struct RouteMemory: Sendable {
    private var last: [ParleyNode.Recipient: ParleyNode.Route] = [:]

    /// A message to `recipient` took `route`; returns whether that differs from the last one.
    mutating func note(_ route: ParleyNode.Route, for recipient: ParleyNode.Recipient) -> Bool {
        last.updateValue(route, forKey: recipient) != route
    }
}

/// How a message left the outbox, as the outbox's record of delivered messages keeps it.
enum OutboxOutcome: Sendable, Hashable, CustomStringConvertible {
    /// Over a direct link; the peer acknowledged it.
    case direct
    /// Through the server, which stored it.
    case server
    /// Refused for good (an unknown recipient, say): it leaves the outbox undelivered.
    case failed(ParleyError.Code)

    /// The outcome of a message that left by `route`; nil for ``ParleyNode/Route/queued`` (it
    /// still waits).
    init?(_ route: ParleyNode.Route) {
        switch route {
        case .direct: self = .direct
        case .server: self = .server
        case .queued: return nil
        }
    }

    /// The text recorded in the outbox: "direct", "server", or "failed: " and the error's code.
    var description: String {
        switch self {
        case .direct: "direct"
        case .server: "server"
        case .failed(let code): "failed: \(code)"
        }
    }
}
