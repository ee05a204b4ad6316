import ParleyCore

/// Decides, for one logged-on session, which stored messages to push and when to read more
/// from the store. Pure state: the connection handler carries out the returned actions.
///
/// Every message is stored before it is pushed, so the store is the source of truth: live
/// notifications are a shortcut, and whenever the shortcut cannot be taken (window full,
/// connection not writable, a load under way) the machine falls back to loading from the
/// store in sequence order. Sequence numbers are global and strictly increasing, and live
/// notifications reach a session in sequence order.
struct DeliveryStateMachine {
    struct Key: Hashable {
        // The message ID first: no padding between the two (``FlatTableKey``'s empty marker is
        // all zero bits, padding included).
        var messageID: MessageID
        var sender: UserID

        init(sender: UserID, messageID: MessageID) {
            self.messageID = messageID
            self.sender = sender
        }
    }

    enum Action: Equatable {
        case none
        /// Push this live message.
        case push(Int64)
        /// Read pending messages with sequence > `after`, at most `limit`.
        case load(after: Int64, limit: Int)
    }

    // Stored narrow, in this order (the word-sized ones first), so that the state takes 24
    // bytes instead of 41: every connection keeps one.

    private(set) var lastPushedSequence: Int64 = 0
    private(set) var inFlight = InFlightMessages()
    private let windowSize: Int32
    /// Messages in the store that may not have been pushed yet.
    private(set) var backlog = true
    private(set) var loading = false
    /// A live notification came while a load was under way: load again afterwards.
    private var liveDuringLoad = false
    private var writable: Bool

    init(window: Int, writable: Bool = true) {
        self.windowSize = Int32(clamping: max(window, 1))
        self.writable = writable
    }

    /// How many pushed messages may wait for an acknowledgement.
    var window: Int { Int(windowSize) }

    private var hasRoom: Bool { writable && inFlight.count < window }

    /// The session logged on: everything stored for it is backlog.
    mutating func start() -> Action {
        backlog = true
        return loadIfPossible()
    }

    /// A message for this session was committed with `sequence`.
    mutating func liveMessage(sequence: Int64, key: Key) -> Action {
        guard sequence > lastPushedSequence else { return .none }
        if loading {
            liveDuringLoad = true
            return .none
        }
        if backlog || !hasRoom {
            backlog = true
            return loadIfPossible()
        }
        lastPushedSequence = sequence
        inFlight.insert(key, sequence: sequence)
        return .push(sequence)
    }

    /// A load finished with these messages (ascending sequence), of at most `limit` asked for.
    mutating func loaded(_ messages: [(sequence: Int64, key: Key)], limit: Int) -> (push: [Int64], next: Action) {
        loading = false
        var push: [Int64] = []
        var leftOver = false
        for message in messages where message.sequence > lastPushedSequence {
            guard hasRoom else {
                leftOver = true
                break
            }
            lastPushedSequence = message.sequence
            inFlight.insert(message.key, sequence: message.sequence)
            push.append(message.sequence)
        }
        if messages.count < limit && !leftOver && !liveDuringLoad {
            backlog = false
        }
        liveDuringLoad = false
        return (push, backlog ? loadIfPossible() : .none)
    }

    /// A load failed; it will be retried at the next trigger.
    mutating func loadFailed() {
        loading = false
        liveDuringLoad = false
        backlog = true
    }

    /// The recipient acknowledged these messages. Returns the ones that were in flight.
    mutating func acknowledged(_ keys: [Key]) -> (acknowledged: [Key], next: Action) {
        var done: [Key] = []
        for key in keys where inFlight.remove(key) {
            done.append(key)
        }
        return (done, backlog ? loadIfPossible() : .none)
    }

    mutating func writabilityChanged(_ isWritable: Bool) -> Action {
        writable = isWritable
        return isWritable && backlog ? loadIfPossible() : .none
    }

    private mutating func loadIfPossible() -> Action {
        // Wait until at least half the window is free, so loads come in useful batches.
        guard !loading, writable, inFlight.count <= window / 2 else { return .none }
        loading = true
        return .load(after: lastPushedSequence, limit: window - inFlight.count)
    }
}

/// The pushed messages that wait for the recipient's acknowledgement, by (sender, message ID).
///
/// A ``FlatTable`` (one multiply per lookup; a `Dictionary` seeds and runs SipHash, which perf
/// put at about 4 % of the server's CPU at saturation, an acknowledgement and a push per
/// message) behind one optional reference: a session that was never pushed a message keeps 8
/// bytes. A value type: copies share the table until one of them changes.
struct InFlightMessages {
    private final class Storage {
        var table: FlatTable<DeliveryStateMachine.Key, Int64>

        init(_ table: FlatTable<DeliveryStateMachine.Key, Int64>) {
            self.table = table
        }
    }

    private var storage: Storage?

    var count: Int { storage?.table.count ?? 0 }

    /// The storage, unshared, made on first use.
    private mutating func uniqueStorage() -> Storage {
        if isKnownUniquelyReferenced(&storage), let storage { return storage }
        let made = Storage(storage?.table ?? FlatTable(minimumCapacity: 16))
        storage = made
        return made
    }

    mutating func insert(_ key: DeliveryStateMachine.Key, sequence: Int64) {
        uniqueStorage().table[key] = sequence
    }

    /// Removes `key`; whether it was there.
    mutating func remove(_ key: DeliveryStateMachine.Key) -> Bool {
        guard storage != nil else { return false }
        return uniqueStorage().table.removeValue(forKey: key) != nil
    }
}

extension DeliveryStateMachine.Key: FlatTableKey {
    /// Message ID 0 is reserved (docs/PROTOCOL.md); a client that sends it anyway is served from
    /// the table's side table.
    static let emptyMarker = Self(sender: UserID(rawValue: 0), messageID: MessageID(0))

    var hashHalves: (UInt64, UInt64) { (messageID.rawValue, UInt64(sender.rawValue)) }
}
