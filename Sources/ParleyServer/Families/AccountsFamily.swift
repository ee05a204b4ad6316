import Foundation
import Logging
import NIOCore
import ParleyCore
import ParleyServerStore
import ParleyWire

/// Accounts: REGISTER, LOGON (password or resumption token), LOGOFF, UPDATE_USER_INFO and
/// CHANGE_PASSWORD (docs/PROTOCOL.md section 9). Every one of them changes the session, so
/// frames that follow wait until it is answered.
///
/// This family checks credentials and the logon throttle; the session core applies the
/// one-session rule and makes the connection logged on (``SessionContext/claimSession(_:_:node:)``).
final class AccountsFamily: RequestFamily, Sendable {
    private static let types: [FrameType] = [.register, .logOn, .logOff, .updateUserInfo, .changePassword]
    /// How long a failed logon waits before it is answered.
    private static let failedLogonDelay = TimeAmount.milliseconds(100)

    var requestTypes: [FrameType] { Self.types }

    func handle(_ frame: Frame, in session: SessionContext) throws(ParleyError) {
        switch frame.type {
        case .register:
            try session.requireGuest()
            register(frame, try frame.decodeMeta(), in: session)
        case .logOn:
            try session.requireGuest()
            logOn(frame, try frame.decodeMeta(), in: session)
        case .logOff:
            logOff(frame, user: try session.requireUser(), in: session)
        case .updateUserInfo:
            let me = try session.requireUser()
            let request: Parley_V1_UpdateUserInfoRequest = try frame.decodeMeta()
            let info = try request.info.userInfo.validated()
            session.serialized(frame) { server throws(ParleyError) in
                var stored = try server.store.updateUserInfo(me, to: info)
                stored.isOnline = true
                server.hooks.notify(.infoChanged(stored))
                var response = Parley_V1_UserInfoResponse()
                response.user = Parley_V1_UserInfo(stored)
                return response
            }
        case .changePassword:
            let me = try session.requireUser()
            let request: Parley_V1_ChangePasswordRequest = try frame.decodeMeta()
            try Self.checkPassword(request.newPassword)
            session.serialized(frame) { server throws(ParleyError) in
                guard let stored = try server.store.user(me),
                    server.hasher.verify(request.oldPassword, against: stored.passwordHash)
                else {
                    throw ParleyError(code: .invalidCredentials, message: "the old password is wrong")
                }
                let hash = try server.hashPassword(request.newPassword)
                try server.store.updatePasswordHash(me, to: hash)
                try server.store.revokeResumptionTokens(for: me)
                return Parley_V1_Empty()
            }
        default:
            throw ParleyError(code: .unknownRequest, message: "unknown frame type \(frame.type)")
        }
    }

    static func checkPassword(_ password: String) throws(ParleyError) {
        guard !password.isEmpty else {
            throw ParleyError(code: .invalidRequest, message: "a password is required")
        }
        guard password.utf8.count <= 1024 else {
            throw ParleyError(code: .invalidRequest, message: "the password is longer than 1024 bytes")
        }
    }

    private func register(_ frame: Frame, _ request: Parley_V1_RegisterRequest, in session: SessionContext) {
        let info: UserInfo
        let node: NodeDeclaration?
        do {
            info = try request.info.userInfo.validated()
            try Self.checkPassword(request.password)
            node = try request.declaredNode()
        } catch {
            session.respond(to: frame, with: error)
            return
        }
        let requested = request.requestedUserID == 0 ? nil : UserID(request.requestedUserID)
        let minimum = session.server.configuration.minimumUserID
        logOnSerialized(frame, node: node, check: .registration, in: session) { server throws(ParleyError) in
            let hash = try server.hashPassword(request.password)
            let user = try server.store.registerUser(
                info,
                passwordHash: hash,
                requestedID: requested,
                minimumID: minimum,
                now: Date()
            )
            server.logger.debug("registered a user", metadata: ["user.id": "\(user.userID)"])
            server.hooks.notify(.registered(user))
            return Authenticated(
                info: user, storedMessages: 0, token: try server.issueResumptionToken(for: user.userID))
        }
    }

    private func logOn(_ frame: Frame, _ request: Parley_V1_LogonRequest, in session: SessionContext) {
        let user = UserID(request.userID)
        let node: NodeDeclaration?
        do {
            node = try request.declaredNode()
            let presence = try request.requestedPresence()
            session.connection.requestPresence(presence.map { PresenceChoice(state: $0.state, text: $0.text) })
        } catch {
            session.respond(to: frame, with: error)
            return
        }
        if !request.resumptionToken.isEmpty {
            logOnWithToken(frame, request, node: node, in: session)
            return
        }
        let attempt = LogonThrottle.Attempt(user: user, address: session.peerAddress, nodeID: node?.nodeID)
        let ticket: LogonThrottle.Ticket
        switch session.server.throttle.withLock({ $0.begin(attempt, now: session.server.configuration.clock.now()) }) {
        case .success(let allowed):
            ticket = allowed
        case .failure(let refusal):
            refuseLogon(frame, user: user, refusal, in: session)
            return
        }
        logOnSerialized(frame, node: node, check: .password(ticket), in: session) { server throws(ParleyError) in
            guard let stored = try server.store.user(user),
                server.hasher.verify(request.password, against: stored.passwordHash)
            else {
                throw ParleyError(code: .invalidCredentials, message: "unknown user ID or wrong password")
            }
            return Authenticated(
                info: stored.info,
                storedMessages: try server.messages.pendingMessageCount(for: user),
                token: try server.issueResumptionToken(for: user)
            )
        }
    }

    /// A LOGON with a resumption token instead of a password: redeems it and issues its
    /// successor in one transaction, without the password hash's cost.
    private func logOnWithToken(
        _ frame: Frame,
        _ request: Parley_V1_LogonRequest,
        node: NodeDeclaration?,
        in session: SessionContext
    ) {
        let user = UserID(request.userID)
        guard request.password.isEmpty else {
            session.respond(
                to: frame,
                with: ParleyError(code: .invalidRequest, message: "a password and a resumption token; send one"))
            return
        }
        let address = session.peerAddress
        if let refusal = session.server.throttle.withLock({
            $0.beginResumption(address: address, now: session.server.configuration.clock.now())
        }) {
            refuseLogon(frame, user: user, refusal, in: session)
            return
        }
        let presented = ResumptionToken.hash(of: request.resumptionToken)
        logOnSerialized(frame, node: node, check: .resumptionToken, in: session) { server throws(ParleyError) in
            let now = server.configuration.clock.date()
            let next = ResumptionToken.make(lifetime: server.configuration.resumptionTokenLifetime, now: now)
            guard
                try server.store.redeemResumptionToken(
                    hash: presented, for: user, replacingWith: next.hash, expiresAt: next.expiresAt, now: now),
                let stored = try server.store.user(user)
            else {
                throw ParleyError(
                    code: .invalidCredentials, message: "unknown, expired or revoked resumption token")
            }
            return Authenticated(
                info: stored.info,
                storedMessages: try server.messages.pendingMessageCount(for: user),
                // A lifetime of zero issues none: the stored one has already expired.
                token: server.configuration.resumptionTokenLifetime > .zero ? next : nil,
                resumed: true
            )
        }
    }

    /// Answers a LOGON the throttle refused without checking its password.
    ///
    /// The one place where refused logons pass, so the one place that counts them.
    private func refuseLogon(
        _ frame: Frame,
        user: UserID,
        _ refusal: LogonThrottle.Refusal,
        in session: SessionContext
    ) {
        session.server.metrics.logonsThrottled.increment()
        session.logger.debug("refused a logon unchecked", metadata: ["user.id": "\(user)", "refusal": "\(refusal)"])
        let message =
            switch refusal {
            case .userBlocked: "too many failed logons for user \(user); retry later"
            case .addressBlocked: "too many failed logons from this address; retry later"
            case .userBusy: "another logon for user \(user) is being checked; retry later"
            case .addressBusy: "too many logons from this address are being checked; retry later"
            }
        session.respond(
            to: frame,
            with: ParleyError(
                code: .tooManyAttempts,
                message: message,
                retryAfterMilliseconds: max(refusal.retryAfter.wireMilliseconds, 1)
            )
        )
    }

    /// Logs the back-offs the throttle started.
    private static func logBackoffs(_ blocks: [LogonThrottle.Block], in session: SessionContext) {
        for block in blocks {
            // The one place where back-offs start, so the one place that counts them.
            session.server.metrics.logonBackoffs.increment()
            let scope: Logger.Metadata =
                switch block.scope {
                case .user(let user): ["user.id": "\(user)"]
                case .address(let address): ["source.address": "\(address)"]
                }
            session.logger.debug(
                "logons throttled after repeated failures",
                metadata: scope.merging(
                    ["failures": "\(block.failures)", "backoff.ms": "\(block.duration.wireMilliseconds)"]
                ) { $1 }
            )
        }
    }

    /// Tells the throttle how a checked logon went.
    private static func report(
        _ check: LogonCheck,
        _ result: Result<Authenticated, any Error>,
        node: NodeDeclaration?,
        in session: SessionContext
    ) {
        let server = session.server
        let now = server.configuration.clock.now()
        switch (check, result) {
        case (.password(let ticket), _):
            let outcome: LogonThrottle.Outcome =
                switch result {
                case .success: .succeeded
                case .failure(let error):
                    ServerConnectionHandler.parleyError(error).code == .invalidCredentials ? .failed : .abandoned
                }
            logBackoffs(server.throttle.withLock { $0.finish(ticket, outcome, now: now) }, in: session)
        case (.registration, .success(let granted)), (.resumptionToken, .success(let granted)):
            // The source that registered a user, or held its token, is a known good source for it.
            let attempt = LogonThrottle.Attempt(
                user: granted.info.userID, address: session.peerAddress, nodeID: node?.nodeID)
            server.throttle.withLock { $0.trust(attempt, now: now) }
        case (.resumptionToken, .failure(let error))
        where ServerConnectionHandler.parleyError(error).code == .invalidCredentials:
            let address = session.peerAddress
            logBackoffs(server.throttle.withLock { $0.resumptionFailed(address: address, now: now) }, in: session)
        case (.registration, .failure), (.resumptionToken, .failure):
            break
        }
    }

    /// Checks credentials off the loop, then hands the logon to the session core, which makes
    /// this connection the user's session and records the declared node: a logon refused for
    /// any reason records nothing.
    private func logOnSerialized(
        _ frame: Frame,
        node: NodeDeclaration?,
        check: LogonCheck,
        in session: SessionContext,
        _ authenticate: @escaping @Sendable (ServerContext) throws(ParleyError) -> Authenticated
    ) {
        session.sessionChangeStarted()
        let server = session.server
        session.blocking { () throws(ParleyError) in
            try authenticate(server)
        } then: { result in
            Self.report(check, result, node: node, in: session)
            switch result {
            case .success(let granted):
                session.claimSession(frame, granted, node: node)
            case .failure(let error):
                let error = ServerConnectionHandler.parleyError(error)
                guard error.code == .invalidCredentials else {
                    session.respond(to: frame, with: error)
                    session.sessionChangeEnded()
                    return
                }
                server.metrics.logonFailures.increment()
                // A pause on every failure slows guessing even before the back-off starts;
                // the connection stays busy meanwhile, so pipelined guesses wait too.
                session.schedule(in: Self.failedLogonDelay) {
                    session.respond(to: frame, with: error)
                    session.sessionChangeEnded()
                }
            }
        }
    }

    /// Logs off and revokes the user's resumption tokens: a client that says goodbye does not
    /// come back without its password.
    private func logOff(_ frame: Frame, user: UserID, in session: SessionContext) {
        session.endSession()
        session.serialized(frame) { server throws(ParleyError) in
            try server.store.revokeResumptionTokens(for: user)
            return Parley_V1_Empty()
        }
    }
}

/// The node fields REGISTER and LOGON share (docs/PROTOCOL.md section 17.5).
private protocol DeclaresNode {
    var nodePublicKey: Data { get }
    var nodeID: String { get }
    var directAddresses: [String] { get }
    var allowDirect: Bool { get }
}

extension DeclaresNode {
    /// The node the request declares, checked; nil when it declares none.
    func declaredNode() throws(ParleyError) -> NodeDeclaration? {
        try NodeDeclaration.validated(
            publicKey: nodePublicKey,
            nodeID: nodeID,
            directAddresses: directAddresses,
            allowsDirect: allowDirect
        )
    }
}

extension Parley_V1_RegisterRequest: DeclaresNode {}
extension Parley_V1_LogonRequest: DeclaresNode {}
