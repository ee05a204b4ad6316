import Foundation
import ParleyCore
import Synchronization

/// What a kill campaign's participants have done so far: which acknowledged sends have not
/// reached their recipient yet, so the drain at the end knows when it is complete.
///
/// The counts that decide the campaign (lost, duplicated, reordered) are made afterwards from
/// the participants' log files, by `scripts/kill-campaign-check.py`; this only tracks progress.
final class CampaignLedger: Sendable {
    /// One message to one recipient.
    struct Key: Hashable, Sendable {
        var sender: UserID
        var recipient: UserID
        var id: MessageID
    }

    private struct State {
        var acknowledged = 0
        var received = 0
        var sendRetries = 0
        /// Acknowledged to the sender, not received yet.
        var missing: Set<Key> = []
        /// Received before the sender had its answer.
        var early: Set<Key> = []
        var stopping = false
        var drainWaiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    /// A sender's send was acknowledged by the server.
    func acknowledged(_ key: Key) {
        state.withLock { state in
            state.acknowledged += 1
            if state.early.remove(key) == nil { state.missing.insert(key) }
        }
    }

    /// A recipient's application took the message.
    func received(_ key: Key) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.received += 1
            if state.missing.remove(key) == nil { state.early.insert(key) }
            guard state.stopping, state.missing.isEmpty else { return nil }
            defer { state.drainWaiter = nil }
            return state.drainWaiter
        }
        waiter?.resume()
    }

    /// A send failed (the server was gone) and is tried again with the same message ID.
    func sendRetried() {
        state.withLock { $0.sendRetries += 1 }
    }

    /// Senders finish the message they are on and send no more.
    func stop() {
        state.withLock { $0.stopping = true }
    }

    var isStopping: Bool { state.withLock { $0.stopping } }

    /// Returns once every acknowledged send has been received, or when the task is cancelled.
    func waitUntilDrained() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let done = state.withLock { state -> Bool in
                    if state.missing.isEmpty || Task.isCancelled { return true }
                    state.drainWaiter = continuation
                    return false
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.drainWaiter = nil }
                return state.drainWaiter
            }
            waiter?.resume()
        }
    }

    /// The totals so far.
    var summary: (acknowledged: Int, received: Int, missing: Int, sendRetries: Int) {
        state.withLock { ($0.acknowledged, $0.received, $0.missing.count, $0.sendRetries) }
    }
}

/// A log file of one participant, one line per event, each written straight through to the
/// file (no buffer in this process) so a line is there as soon as the event happened.
final class CampaignLog: Sendable {
    private let handle: FileHandle

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw CommandFailure(message: "cannot create \(path)")
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CommandFailure(message: "cannot open \(path) for writing")
        }
        self.handle = handle
    }

    func write(_ line: String) throws {
        try handle.write(contentsOf: Data((line + "\n").utf8))
    }

    deinit {
        do {
            try handle.close()
        } catch {
            Output.note("closing a campaign log failed: \(error)")
        }
    }
}
