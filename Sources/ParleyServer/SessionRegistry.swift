import Foundation
import NIOCore
import ParleyCore
import ParleyServerStore
import Synchronization

/// A logged-on session as other parts of the server see it: where to reach its handler.
///
/// `@unchecked Sendable`: the handler is reached only on its event loop, through
/// ``handlerOnLoop``, which checks that at run time as an `NIOLoopBound` would (one holds a
/// second copy of the event loop; a handle is kept by every registry entry). Its identity, and
/// the handler's constants (connection number, time, peer), are read anywhere.
struct SessionHandle: @unchecked Sendable {
    let eventLoop: any EventLoop
    private let handler: ServerConnectionHandler

    init(eventLoop: any EventLoop, handler: ServerConnectionHandler) {
        self.eventLoop = eventLoop
        self.handler = handler
    }

    /// The session's identity (its handler's).
    var id: ObjectIdentifier { ObjectIdentifier(handler) }

    /// The connection's number (a constant of the handler).
    var connectionID: UInt64 { handler.connectionID }

    /// What the admin sees of this session of `user` (``ServerConnectionHandler/description(of:agent:)``).
    func description(of user: UserID, agent: String) -> ServerSession {
        handler.description(of: user, agent: agent)
    }

    /// Runs `body` with the session's handler on its event loop.
    func execute(_ body: @escaping @Sendable (ServerConnectionHandler) -> Void) {
        eventLoop.execute { [self] in body(handlerOnLoop) }
    }

    /// The handler, for code running on its event loop (checked, as `NIOLoopBound` checks).
    var handlerOnLoop: ServerConnectionHandler {
        eventLoop.preconditionInEventLoop()
        return handler
    }
}

/// Who is online: one session per user, plus every open connection for shutdown and limits.
final class SessionRegistry: Sendable {
    enum ClaimResult {
        case claimed
        /// The user has a session and the policy keeps it.
        case rejected
        /// The user had a session; it must be told why and closed.
        case replaced(SessionHandle, because: Takeover)
    }

    /// Why a new logon may take an existing session over.
    enum Takeover: Equatable {
        /// The server lets the newer session win (`replacesExistingSession`).
        case newerSession
        /// The new logon declared the node the existing session declared: that node restarted
        /// and the old session is stale (its host dropped off the network, the process died).
        case sameNode
    }

    /// The one-session rule: whether a logon that declares `node` may take over a session that
    /// declared `existingNode`.
    ///
    /// - Returns: nil when the existing session stays and the logon is refused.
    static func takeover(existingNode: String?, node: String?, replaceExisting: Bool) -> Takeover? {
        if let node, node == existingNode { return .sameNode }
        return replaceExisting ? .newerSession : nil
    }

    /// One per online user: what the admin sees of it is the handle's constants (connection
    /// number, time, peer) and the agent, recorded once its logon completed.
    private struct Session {
        var handle: SessionHandle
        /// The node ID the session declared at logon, if any.
        var nodeID: String?
        /// The client's agent; nil until the logon completed (``describe(_:for:agent:)``).
        var agent: String?

        func description(of user: UserID) -> ServerSession? {
            agent.map { handle.description(of: user, agent: $0) }
        }
    }

    /// An open connection, equal to another only if it is the same channel (a set of these
    /// takes 16 bytes a connection; a dictionary by `ObjectIdentifier` 24).
    private struct Connection: Hashable {
        let channel: any Channel

        static func == (lhs: Connection, rhs: Connection) -> Bool { lhs.channel === rhs.channel }
        func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(channel)) }
    }

    private struct State {
        var sessions: [UserID: Session] = [:]
        var connections: Set<Connection> = []
        var accepting = true
    }

    private let state = Mutex(State())
    /// Gauges of connections, sessions and guests, updated with every change.
    private let metrics: ServerMetrics?

    init(metrics: ServerMetrics? = nil) {
        self.metrics = metrics
    }

    /// Updates the gauges from `state` (called with the lock held, so they never go backwards).
    private func measure(_ state: State) {
        metrics?.update(connections: state.connections.count, sessions: state.sessions.count)
    }

    /// Registers a new connection, or says why it cannot be taken (the server is full or
    /// shutting down).
    func addConnection(_ channel: any Channel, limit: Int) -> ParleyError? {
        state.withLock { state in
            guard state.accepting else {
                return ParleyError(code: .shuttingDown, message: "the server is shutting down")
            }
            guard state.connections.count < limit else {
                return ParleyError(code: .tooManyConnections, message: "the server is full; try again later")
            }
            state.connections.insert(Connection(channel: channel))
            measure(state)
            return nil
        }
    }

    func removeConnection(_ channel: any Channel) {
        state.withLock { state in
            state.connections.remove(Connection(channel: channel))
            measure(state)
        }
    }

    var connectionCount: Int { state.withLock { $0.connections.count } }

    /// Stops accepting connections and returns every open one.
    func closeForShutdown() -> [any Channel] {
        state.withLock { state in
            state.accepting = false
            return state.connections.map(\.channel)
        }
    }

    /// Makes `handle` the user's session unless the one-session rule keeps an existing one.
    ///
    /// - Parameter nodeID: the node the logon declared; a logon from the node that holds the
    ///   existing session takes it over.
    func claim(_ user: UserID, for handle: SessionHandle, nodeID: String?, replaceExisting: Bool) -> ClaimResult {
        state.withLock { state in
            let new = Session(handle: handle, nodeID: nodeID)
            guard let existing = state.sessions[user], existing.handle.id != handle.id else {
                state.sessions[user] = new
                measure(state)
                return .claimed
            }
            guard
                let reason = Self.takeover(
                    existingNode: existing.nodeID, node: nodeID, replaceExisting: replaceExisting)
            else { return .rejected }
            state.sessions[user] = new
            return .replaced(existing.handle, because: reason)
        }
    }

    /// Removes `user`'s session if it is still `handle`'s.
    func release(_ user: UserID, for handle: ObjectIdentifier) {
        state.withLock { state in
            if state.sessions[user]?.handle.id == handle {
                state.sessions[user] = nil
                measure(state)
            }
        }
    }

    /// Records that the logon of `user`'s session completed, with the client's agent, if the
    /// session is still `handle`'s: the admin sees it from now on.
    func describe(_ user: UserID, for handle: ObjectIdentifier, agent: String) {
        state.withLock { state in
            if state.sessions[user]?.handle.id == handle {
                state.sessions[user]?.agent = agent
            }
        }
    }

    /// The logged-on sessions whose logon completed, by user ID.
    var sessionDescriptions: [ServerSession] {
        state.withLock { state in
            state.sessions.compactMap { user, session in session.description(of: user) }
        }.sorted { $0.user < $1.user }
    }

    /// The session with this ID (``ServerSession/id``), if it is logged on.
    func session(numbered id: UInt64) -> SessionHandle? {
        state.withLock { state in
            state.sessions.values.first { $0.agent != nil && $0.handle.connectionID == id }?.handle
        }
    }

    func session(for user: UserID) -> SessionHandle? {
        state.withLock { $0.sessions[user]?.handle }
    }

    /// The sessions of `users`, in order (nil for a user offline), under one lock.
    func sessions(for users: some Sequence<UserID>) -> [SessionHandle?] {
        state.withLock { state in users.map { state.sessions[$0]?.handle } }
    }

    func isOnline(_ user: UserID) -> Bool {
        state.withLock { $0.sessions[user] != nil }
    }

    var onlineUsers: Set<UserID> {
        state.withLock { Set($0.sessions.keys) }
    }

    /// Connections, sessions, and up to `limit` online users (lowest IDs first), for status pages.
    func snapshot(listing limit: Int) -> (connections: Int, sessions: Int, users: [UserID]) {
        let (connections, users) = state.withLock { ($0.connections.count, Array($0.sessions.keys)) }
        return (connections, users.count, Array(users.sorted().prefix(limit)))
    }
}
