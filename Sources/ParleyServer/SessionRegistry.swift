import NIOCore
import ParleyCore
import ParleyStore
import Synchronization

/// A logged-on session as other parts of the server see it: where to reach its handler.
struct SessionHandle: Sendable {
    let id: ObjectIdentifier
    let eventLoop: any EventLoop
    let handler: NIOLoopBound<ServerConnectionHandler>

    /// Runs `body` with the session's handler on its event loop.
    func execute(_ body: @escaping @Sendable (ServerConnectionHandler) -> Void) {
        let handler = self.handler
        eventLoop.execute { body(handler.value) }
    }
}

/// Who is online: one session per user, plus every open connection for shutdown and limits.
final class SessionRegistry: Sendable {
    enum ClaimResult {
        case claimed
        /// The user has a session and the policy keeps it.
        case rejected
        /// The user had a session; it must be told and closed.
        case replaced(SessionHandle)
    }

    private struct State {
        var sessions: [UserID: SessionHandle] = [:]
        var connections: [ObjectIdentifier: any Channel] = [:]
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

    /// Registers a new connection; false when the server is full or shutting down.
    /// Registers a new connection, or says why it cannot be taken.
    func addConnection(_ channel: any Channel, limit: Int) -> ParleyError? {
        state.withLock { state in
            guard state.accepting else {
                return ParleyError(code: .shuttingDown, message: "the server is shutting down")
            }
            guard state.connections.count < limit else {
                return ParleyError(code: .tooManyConnections, message: "the server is full; try again later")
            }
            state.connections[ObjectIdentifier(channel)] = channel
            measure(state)
            return nil
        }
    }

    func removeConnection(_ channel: any Channel) {
        state.withLock { state in
            state.connections[ObjectIdentifier(channel)] = nil
            measure(state)
        }
    }

    var connectionCount: Int { state.withLock { $0.connections.count } }

    /// Stops accepting connections and returns every open one.
    func closeForShutdown() -> [any Channel] {
        state.withLock { state in
            state.accepting = false
            return Array(state.connections.values)
        }
    }

    func claim(_ user: UserID, for handle: SessionHandle, replaceExisting: Bool) -> ClaimResult {
        state.withLock { state in
            guard let existing = state.sessions[user], existing.id != handle.id else {
                state.sessions[user] = handle
                measure(state)
                return .claimed
            }
            guard replaceExisting else { return .rejected }
            state.sessions[user] = handle
            return .replaced(existing)
        }
    }

    /// Removes `user`'s session if it is still `handle`'s.
    func release(_ user: UserID, for handle: ObjectIdentifier) {
        state.withLock { state in
            if state.sessions[user]?.id == handle {
                state.sessions[user] = nil
                measure(state)
            }
        }
    }

    func session(for user: UserID) -> SessionHandle? {
        state.withLock { $0.sessions[user] }
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
