import NIOCore
import ParleyCore
import Synchronization

/// The commands that wait for a reply, server-wide: one table, correlated by command ID, with
/// their deadlines swept on an event loop by one timer (set for the earliest deadline) instead
/// of a timer per command (docs/PROTOCOL.md section 24).
///
/// Each entry is completed exactly once: by the reply, by its deadline (COMMAND_TIMED_OUT), or
/// when the recipient's session ends (RECIPIENT_OFFLINE). Whatever comes after that (a late
/// reply) finds no entry and is dropped by the caller of ``complete(_:from:with:)``.
final class CommandTable: Sendable {
    typealias Completion = @Sendable (Result<ByteBuffer, ParleyError>) -> Void

    private struct Entry {
        var name: String
        var timeout: Duration
        var deadline: NIODeadline
        /// The session the command was pushed to; nil for the server application's handlers.
        var recipient: ObjectIdentifier?
        var completion: Completion
    }

    private struct State {
        var nextID: UInt64 = 1
        var entries: [UInt64: Entry] = [:]
        /// The sweep that is scheduled, and for when.
        var sweep: (at: NIODeadline, task: Scheduled<Void>)?
    }

    private let state = Mutex(State())

    /// How many commands wait for a reply.
    var count: Int { state.withLock { $0.entries.count } }

    /// Adds a command that waits for a reply until `timeout` from now.
    ///
    /// - Parameters:
    ///   - recipient: the session that must reply (``complete(_:from:with:)`` checks it); nil
    ///     when the server application answers.
    ///   - loop: where the deadline is swept.
    ///   - completion: called once, off the table's lock, with the reply or the failure.
    /// - Returns: the command ID that goes into the COMMAND event.
    func add(
        name: String,
        timeout: Duration,
        recipient: ObjectIdentifier?,
        on loop: any EventLoop,
        completion: @escaping Completion
    ) -> UInt64 {
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        return state.withLock { state in
            let id = state.nextID
            state.nextID &+= 1
            if state.nextID == 0 { state.nextID = 1 }
            state.entries[id] = Entry(
                name: name, timeout: timeout, deadline: deadline, recipient: recipient, completion: completion)
            if state.sweep.map({ deadline < $0.at }) ?? true {
                state.sweep?.task.cancel()
                state.sweep = (deadline, schedule(at: deadline, on: loop))
            }
            return id
        }
    }

    /// Completes command `id` with the reply (or failure) from `replier`.
    ///
    /// - Returns: false when no such command waits for that replier (it timed out, its
    ///   recipient left, or the ID was never given to it).
    @discardableResult
    func complete(_ id: UInt64, from replier: ObjectIdentifier?, with result: Result<ByteBuffer, ParleyError>) -> Bool {
        let entry = state.withLock { state -> Entry? in
            guard let entry = state.entries[id], entry.recipient == replier else { return nil }
            state.entries[id] = nil
            return entry
        }
        entry?.completion(result)
        return entry != nil
    }

    /// The session `recipient` ended: its commands fail with RECIPIENT_OFFLINE at once.
    func recipientLeft(_ recipient: ObjectIdentifier, user: UserID) {
        let left = state.withLock { state -> [Entry] in
            let ids = state.entries.filter { $0.value.recipient == recipient }.map(\.key)
            return ids.compactMap { state.entries.removeValue(forKey: $0) }
        }
        for entry in left {
            entry.completion(
                .failure(
                    ParleyError(
                        code: .recipientOffline,
                        message: "user \(user) went offline before replying to command \"\(entry.name)\""
                    )
                )
            )
        }
    }

    /// Fails every waiting command with `error` (the server stops: their deadlines would be
    /// swept on event loops that are going away).
    func failAll(_ error: ParleyError) {
        let all = state.withLock { state -> [Entry] in
            state.sweep?.task.cancel()
            state.sweep = nil
            defer { state.entries = [:] }
            return Array(state.entries.values)
        }
        for entry in all { entry.completion(.failure(error)) }
    }

    private func schedule(at deadline: NIODeadline, on loop: any EventLoop) -> Scheduled<Void> {
        loop.scheduleTask(deadline: deadline) { [self] in sweep(on: loop) }
    }

    /// Fails every command whose deadline passed and schedules the next sweep.
    private func sweep(on loop: any EventLoop) {
        let now = NIODeadline.now()
        let expired = state.withLock { state -> [Entry] in
            let ids = state.entries.filter { $0.value.deadline <= now }.map(\.key)
            let expired = ids.compactMap { state.entries.removeValue(forKey: $0) }
            if let next = state.entries.values.map(\.deadline).min() {
                state.sweep = (next, schedule(at: next, on: loop))
            } else {
                state.sweep = nil
            }
            return expired
        }
        for entry in expired {
            entry.completion(
                .failure(
                    ParleyError(
                        code: .commandTimedOut,
                        message: "no reply to command \"\(entry.name)\" within \(entry.timeout)"
                    )
                )
            )
        }
    }
}
