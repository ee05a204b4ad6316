import Foundation
import ParleyCore
import Synchronization

/// The presence of every logged-on user, numbered so that watchers apply changes in order.
///
/// A user is online with the state it chose (stored, kept across logons) or the one its logon
/// asked for, from the moment its session starts until the session ends: a LOGOFF, a closed
/// connection, or a connection the idle timeout closed. Offline users are not held.
///
/// Every change gets the next number of one server-wide sequence. A watcher keeps the number of
/// the last change it applied for each contact and ignores older ones, so changes that travel
/// through different threads cannot leave it showing a stale state; the logon snapshot carries
/// the number it was taken at, so a change that raced with it is applied only if it is newer.
final class PresenceHub: Sendable {
    /// A presence and the number of the change that set it.
    struct Change: Sendable {
        var user: UserID
        var presence: Presence
        var sequence: UInt64
    }

    private struct Entry {
        /// What watchers see; nil while the session is reserved and its state not known yet.
        var presence: Presence?
        /// The session the state belongs to; the end of a replaced session changes nothing.
        var session: ObjectIdentifier
    }

    private struct State {
        var entries: [UserID: Entry] = [:]
        var sequence: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Makes `session` the one that holds `user`'s presence, before its state is known (called on
    /// the session's event loop when it starts, so that its end, on the same loop, always comes
    /// after). Watchers keep seeing what they saw (offline, or the replaced session's state).
    func reserve(_ user: UserID, session: ObjectIdentifier) {
        state.withLock { state in
            state.entries[user] = Entry(presence: state.entries[user]?.presence, session: session)
        }
    }

    /// Records that `user` is online on `session` with `presence`; nothing if `session` no
    /// longer holds the user's presence (it ended, or was replaced, meanwhile).
    ///
    /// - Returns: the change watchers must hear of, or nil when what they see did not change
    ///   (a takeover by a session showing the same state).
    func online(_ user: UserID, session: ObjectIdentifier, presence: Presence) -> Change? {
        state.withLock { state in
            guard let entry = state.entries[user], entry.session == session else { return nil }
            let previous = entry.presence
            state.entries[user]?.presence = presence
            if let previous, Self.sameForWatchers(previous, presence) { return nil }
            state.sequence += 1
            return Change(user: user, presence: presence, sequence: state.sequence)
        }
    }

    /// Changes the presence of `user`'s `session`; nil when that is not the user's session or
    /// nothing watchers see changed.
    func change(_ user: UserID, session: ObjectIdentifier, to presence: Presence) -> Change? {
        state.withLock { state in
            guard let entry = state.entries[user], entry.session == session, let shown = entry.presence else {
                return nil
            }
            state.entries[user]?.presence = presence
            if Self.sameForWatchers(shown, presence) { return nil }
            state.sequence += 1
            return Change(user: user, presence: presence, sequence: state.sequence)
        }
    }

    /// Records that `session` of `user` ended; nil when another session holds the user's
    /// presence now (it was taken over), or watchers never saw this one.
    func offline(_ user: UserID, session: ObjectIdentifier, at now: Date) -> Change? {
        state.withLock { state in
            guard let entry = state.entries[user], entry.session == session else { return nil }
            state.entries[user] = nil
            guard entry.presence != nil else { return nil }
            state.sequence += 1
            return Change(user: user, presence: Presence(state: .offline, since: now), sequence: state.sequence)
        }
    }

    /// The current presence of each of `users` (offline for those without a session), and the
    /// number of the last change they reflect.
    func snapshot(of users: [UserID]) -> (presences: [UserID: Presence], sequence: UInt64) {
        state.withLock { state in
            var presences: [UserID: Presence] = [:]
            presences.reserveCapacity(users.count)
            for user in users { presences[user] = state.entries[user]?.presence ?? Presence.offline }
            return (presences, state.sequence)
        }
    }

    /// How many users are online with a presence.
    var count: Int { state.withLock { $0.entries.count } }

    private static func sameForWatchers(_ lhs: Presence, _ rhs: Presence) -> Bool {
        lhs.state == rhs.state && lhs.text == rhs.text
    }
}
