import Crypto
import Foundation
import ParleyCore
import ParleyServerStore

/// A resumption token as issued to a client (docs/PROTOCOL.md section 9.2.1): 32 random bytes
/// in base64url without padding. The server stores only ``hash``.
struct ResumptionToken: Sendable {
    /// The token as the client sees it: 43 characters.
    let text: String
    /// SHA-256 of the token's UTF-8 text, the only form the store keeps.
    let hash: [UInt8]
    let expiresAt: Date

    /// A fresh random token that expires `lifetime` from `now`.
    static func make(lifetime: Duration, now: Date) -> ResumptionToken {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let text = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        let seconds = lifetime.timeInterval
        return ResumptionToken(text: text, hash: hash(of: text), expiresAt: now.addingTimeInterval(seconds))
    }

    /// The hash under which a presented token is looked up.
    static func hash(of text: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(text.utf8)))
    }
}

/// What a logon proved, handed from the blocking pool back to the connection's loop.
struct Authenticated: Sendable {
    var info: UserInfo
    /// Stored messages waiting for the user.
    var storedMessages: Int
    /// The token the answer carries; nil when the server issues none.
    var token: ResumptionToken?
    /// Whether a resumption token, not a password, proved the user.
    var resumed = false
}

/// How a logon was checked, for the throttle's bookkeeping.
enum LogonCheck: Sendable {
    /// REGISTER: nothing to throttle; its source becomes trusted for the new user.
    case registration
    /// LOGON with a password, admitted by the throttle with this ticket.
    case password(LogonThrottle.Ticket)
    /// LOGON with a resumption token: a wrong one counts against the source address only.
    case resumptionToken
}

extension ServerContext {
    /// Issues and stores a fresh resumption token for `user`, or nil if the configured lifetime
    /// is zero.
    func issueResumptionToken(for user: UserID) throws(ParleyError) -> ResumptionToken? {
        let lifetime = configuration.resumptionTokenLifetime
        guard lifetime > .zero else { return nil }
        let now = configuration.clock.date()
        let token = ResumptionToken.make(lifetime: lifetime, now: now)
        try store.storeResumptionToken(hash: token.hash, for: user, expiresAt: token.expiresAt, now: now)
        return token
    }
}
