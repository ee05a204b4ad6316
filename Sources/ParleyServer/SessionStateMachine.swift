import ParleyCore
import ParleyWire

/// Who a connection speaks for, as a request family sees it.
enum SessionIdentity: Equatable, Sendable {
    /// The handshake is done; nobody is logged on.
    case guest
    /// Logged on as this user.
    case user(UserID)

    /// The logged-on user, or nil for a guest.
    var user: UserID? {
        if case .user(let user) = self { return user }
        return nil
    }
}

/// The session protocol of one client connection (docs/PROTOCOL.md sections 8 and 9), as pure
/// state: the connection handler feeds it frames and events and carries out what it returns.
///
/// ```
/// awaitingHello --HELLO--> guest --claim--> loggingOn --complete--> loggedOn
///                            ^                  |                       |
///                            +---- refused -----+-------- log off ------+
/// any state --fatal error, takeover, shutdown, idle, closed--> closing
/// ```
///
/// It owns the connection's ``RequestFlow``, so which frames are handled now, which wait (for
/// example behind a LOGON being checked) and whether to read are decided in one place.
struct SessionStateMachine {
    enum State: Equatable {
        case awaitingHello
        case guest
        /// This connection holds `user`'s session in the registry; the logon is not answered yet
        /// (its node is being recorded).
        case loggingOn(UserID)
        case loggedOn(UserID)
        case closing
    }

    /// What to do with a frame that may be handled now.
    enum FrameAction: Equatable {
        /// Nothing: the frame waits in the flow, or the connection is closing.
        case none
        /// The first frame, a HELLO: check it and answer it.
        case hello(Frame)
        /// Hand the frame to the request family that handles its type.
        case route(Frame, SessionIdentity)
        /// Send this fatal error and close.
        case fail(ParleyError)
    }

    /// A session that ended: the registry entry to release, and whether the request families
    /// were told it started (and are now to be told it ended).
    struct EndedSession: Equatable {
        var user: UserID
        var wasLoggedOn: Bool
    }

    /// ``State`` without its user, which is `sessionUser` in the states that have one (stored
    /// apart so that a connection's machine takes 41 bytes instead of 58).
    private enum Phase: UInt8 {
        case awaitingHello, guest, loggingOn, loggedOn, closing
    }

    /// Which frames are handled now and which wait, and whether to read (backpressure).
    private(set) var flow: RequestFlow
    private var phase = Phase.awaitingHello
    /// The families were told the session started and not yet that it ended.
    private var started = false
    /// The user whose session this connection holds in the registry (the user of `loggingOn`
    /// and `loggedOn`). Also kept when the state turns `.closing`, before the channel goes
    /// inactive: the session must still be released then.
    private(set) var sessionUser: UserID?

    init(flow: RequestFlow) {
        self.flow = flow
    }

    var state: State {
        switch phase {
        case .awaitingHello: .awaitingHello
        case .guest: .guest
        case .loggingOn: sessionUser.map { .loggingOn($0) } ?? .guest
        case .loggedOn: sessionUser.map { .loggedOn($0) } ?? .guest
        case .closing: .closing
        }
    }

    var isClosing: Bool { phase == .closing }

    /// Who the connection speaks for now.
    var identity: SessionIdentity {
        if phase == .loggedOn, let user = sessionUser { return .user(user) }
        return .guest
    }

    // MARK: Frames

    /// A frame arrived from the peer.
    mutating func received(_ frame: Frame) -> FrameAction {
        guard phase != .closing, let frame = flow.received(frame) else { return .none }
        return action(for: frame)
    }

    /// The next waiting frame that may be handled now; nil when none may.
    mutating func next() -> FrameAction? {
        guard phase != .closing, let frame = flow.next() else { return nil }
        return action(for: frame)
    }

    private mutating func action(for frame: Frame) -> FrameAction {
        switch phase {
        case .closing:
            return .none
        case .awaitingHello:
            guard frame.type == .hello else {
                return .fail(ParleyError(code: .handshakeRequired, message: "the first frame must be HELLO"))
            }
            return .hello(frame)
        case .guest, .loggingOn, .loggedOn:
            return .route(frame, identity)
        }
    }

    // MARK: Session changes

    /// The HELLO was accepted and answered.
    mutating func helloAccepted() {
        guard phase == .awaitingHello else { return }
        phase = .guest
    }

    /// The registry made this connection `user`'s session; the logon completes once its node
    /// is recorded.
    mutating func claimed(_ user: UserID) {
        guard phase == .guest else { return }
        phase = .loggingOn
        sessionUser = user
    }

    /// Whether a logon of `user` that claimed the session may still complete: false when the
    /// session was taken over or the connection closed meanwhile.
    func mayComplete(_ user: UserID) -> Bool {
        phase == .loggingOn && sessionUser == user
    }

    /// The logon of `user` is answered: the families are to be told the session started.
    ///
    /// - Returns: false when the logon may no longer complete (nothing changes then).
    mutating func loggedOn(_ user: UserID) -> Bool {
        guard mayComplete(user) else { return false }
        phase = .loggedOn
        started = true
        return true
    }

    /// The session ends (log off, a failed logon, a closed connection): leave the registry.
    ///
    /// - Returns: the session to release, or nil when this connection held none.
    mutating func endSession() -> EndedSession? {
        guard let user = sessionUser else { return nil }
        sessionUser = nil
        let wasLoggedOn = started
        started = false
        switch phase {
        case .loggingOn, .loggedOn: phase = .guest
        case .awaitingHello, .guest, .closing: break
        }
        return EndedSession(user: user, wasLoggedOn: wasLoggedOn)
    }

    /// What a takeover by another connection means for this one.
    enum ReplacedAction: Equatable {
        /// Nothing to tell: no session here, or the connection is closing.
        case none
        /// Taken over before the logon completed: it must not complete (its answer says why).
        case abandonLogOn
        /// Tell the peer why and close; the registry entry is released when the channel closes.
        case closeReplaced
    }

    /// Another connection logged on as this session's user and took the session over.
    mutating func replaced() -> ReplacedAction {
        switch phase {
        case .loggingOn:
            sessionUser = nil
            phase = .guest
            return .abandonLogOn
        case .loggedOn:
            phase = .closing
            flow.close()
            return .closeReplaced
        case .awaitingHello, .guest, .closing:
            return .none
        }
    }

    /// The connection is closing (a fatal error, shutdown, an idle or broken link, a closed
    /// channel): nothing more is handled.
    ///
    /// - Returns: false if it was closing already.
    @discardableResult
    mutating func close() -> Bool {
        guard phase != .closing else { return false }
        phase = .closing
        flow.close()
        return true
    }

    // MARK: Request flow

    /// A session-changing request (REGISTER, LOGON, LOGOFF...) is being processed: later frames
    /// wait until ``sessionChangeEnded()``.
    mutating func sessionChangeStarted() { flow.sessionChangeStarted() }
    mutating func sessionChangeEnded() { flow.sessionChangeEnded() }

    /// A request was handed to work that answers it later.
    mutating func started(query: Bool) { flow.started(query: query) }
    /// A request started with ``started(query:)`` was answered.
    mutating func answered(query: Bool) { flow.answered(query: query) }

    mutating func writabilityChanged(_ writable: Bool) { flow.writabilityChanged(writable) }

    /// Whether the handler may ask the socket for more bytes.
    var mayRead: Bool { flow.mayRead }
}
