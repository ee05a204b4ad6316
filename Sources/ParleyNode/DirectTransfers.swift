import ParleyClient
import ParleyCore
import Synchronization

/// The file transfers a node carries over direct links (docs/PROTOCOL.md section 26.9): the ones
/// it receives, from the offer to the end, and the ones it sends, so either side can cancel.
final class DirectTransfers: Sendable {
    /// The most bytes one PEER_TRANSFER_CHUNK carries.
    static let chunkSize = 65_536
    /// Chunks a sender keeps in flight: 8 of 64 KiB.
    static let window = 8
    /// How long a PEER_TRANSFER_START waits for the receiving application to accept or decline.
    static let decisionTimeout = Duration.seconds(60)
    /// How many finished transfers a receiver remembers, to answer a START repeated after a lost
    /// END answer with `COMPLETED` instead of offering the file again.
    static let rememberedCompletions = 64

    /// Names a transfer a node receives: its sender and the sender's ID for it.
    struct Key: Hashable {
        var sender: UserID
        var id: TransferID
    }

    /// A received transfer the application accepted (``ParleyNode/receiveFile(_:into:progress:)``).
    struct Accepted {
        var sink: FileChunkSink
        var folder: String
        var progress: @Sendable (TransferProgress) -> Void
        var resumedFrom: UInt64
        var started: ContinuousClock.Instant
        /// The `receiveFile` call waiting for the end.
        var waiter: CheckedContinuation<Result<String, ParleyError>, Never>?
    }

    /// A transfer this node receives.
    struct Inbound {
        var offer: FileOffer
        /// The link its sender used last.
        var link: DirectLink
        /// The PEER_TRANSFER_START that waits for the application's decision.
        var waitingStart: UInt32?
        var accepted: Accepted?
    }

    /// How a transfer this node sends was stopped.
    struct Stop: Sendable {
        /// The recipient stopped it (PEER_TRANSFER_CLOSE), not this node's application.
        var byPeer: Bool
        var outcome: TransferOutcome
        var reason: String
    }

    /// A transfer this node sends.
    struct Outbound {
        var name: String
        var recipient: ParleyNode.Recipient
        /// nil: a stream.
        var size: UInt64?
        /// The bytes the receiver acknowledged.
        var acknowledged: UInt64 = 0
        /// The receiver answered a START: its application accepted the file.
        var isAccepted = false
        /// Why it stops, once either side asked.
        var stop: Stop?
        /// The link it uses now.
        var link: DirectLink?
    }

    private struct State {
        var inbound: [Key: Inbound] = [:]
        var outbound: [TransferID: Outbound] = [:]
        var completed: [Key] = []
    }

    private let state = Mutex(State())

    /// Runs `body` on the state of received transfers.
    func withInbound<T>(_ body: (inout [Key: Inbound]) -> T) -> T {
        state.withLock { body(&$0.inbound) }
    }

    /// Remembers that `key` completed (a repeated START answers `COMPLETED`).
    func completed(_ key: Key) {
        state.withLock { state in
            state.completed.append(key)
            if state.completed.count > Self.rememberedCompletions { state.completed.removeFirst() }
        }
    }

    func hasCompleted(_ key: Key) -> Bool { state.withLock { $0.completed.contains(key) } }

    /// The node stops: every waiting `receiveFile` fails with `notConnected`, and the partial
    /// files stay, so the same offer accepted into the same folder by a later run resumes.
    func stopReceiving() {
        let waiters = state.withLock { state in
            defer { state.inbound = [:] }
            return state.inbound.values.compactMap { $0.accepted?.waiter }
        }
        let error = ParleyError(code: .notConnected, message: "the node stopped; the partial file stays for a resume")
        for waiter in waiters { waiter.resume(returning: .failure(error)) }
    }

    /// Registers a transfer this node starts sending; false when one with this ID runs already.
    func beginSending(_ id: TransferID, _ transfer: Outbound) -> Bool {
        state.withLock { state in
            guard state.outbound[id] == nil else { return false }
            state.outbound[id] = transfer
            return true
        }
    }

    func sending(_ id: TransferID, over link: DirectLink) {
        state.withLock { state in state.outbound[id]?.link = link }
    }

    /// The receiver of `id` accepted it and holds `offset` bytes.
    func acknowledged(_ id: TransferID, upTo offset: UInt64) {
        state.withLock { state in
            state.outbound[id]?.isAccepted = true
            state.outbound[id]?.acknowledged = offset
        }
    }

    /// The transfers under way, both ways, ordered by ID.
    func list() -> [ParleyNode.DirectTransfer] {
        let (inbound, outbound) = state.withLock { ($0.inbound, $0.outbound) }
        let received = inbound.map { key, entry in
            ParleyNode.DirectTransfer(
                id: key.id, direction: .receiving, peer: .user(key.sender), name: entry.offer.name,
                size: entry.offer.isStream ? nil : entry.offer.size, bytesDone: entry.accepted?.sink.size ?? 0,
                isAccepted: entry.accepted != nil)
        }
        let sent = outbound.map { id, entry in
            ParleyNode.DirectTransfer(
                id: id, direction: .sending, peer: entry.recipient, name: entry.name, size: entry.size,
                bytesDone: entry.acknowledged, isAccepted: entry.isAccepted)
        }
        return (received + sent).sorted {
            ($0.id.rawValue, $0.direction == .sending ? 1 : 0) < ($1.id.rawValue, $1.direction == .sending ? 1 : 0)
        }
    }

    func endSending(_ id: TransferID) { state.withLock { _ = $0.outbound.removeValue(forKey: id) } }

    /// Stops a transfer this node sends; returns its link, or nil when it does not run here.
    func stopSending(_ id: TransferID, _ stop: Stop) -> DirectLink?? {
        state.withLock { state in
            guard state.outbound[id] != nil else { return nil }
            state.outbound[id]?.stop = stop
            return .some(state.outbound[id]?.link)
        }
    }

    func stop(of id: TransferID) -> Stop? { state.withLock { $0.outbound[id]?.stop } }
}
