import ParleyCore

/// The message log's hash tables (its deliveries by (recipient, sender, message ID), its
/// recipients' queues and known users by user ID): open addressing with linear probing in flat
/// arrays, instead of a Swift `Dictionary` or `Set`.
///
/// The message path looks keys up several times per message (the de-duplication check, the
/// store, the acknowledgement, the recipient's queue), and a `Dictionary` seeds, feeds and
/// finalizes a SipHash hasher for each: about 7 % of the server's CPU under load, beside the
/// lookups themselves. Here a lookup hashes the 16-byte key with one 64 x 64 -> 128-bit multiply
/// of its two halves, each mixed with a secret drawn per table (folded, as wyhash and Go's
/// runtime hash do): message IDs are chosen by clients, and without the secret a client cannot
/// choose IDs that pile up in one run of slots.
///
/// Removal shifts the following entries back instead of leaving tombstones, so a table that
/// has seen many removals probes no further than a fresh one.
///
/// Keys and values are kept in two arrays: a probe reads only keys, four to a cache line, and
/// copies no value (the log's values hold class references, which a copy retains and releases).
/// One key value marks an empty slot (``FlatTableKey/emptyMarker``: message ID 0 for deliveries,
/// reserved by docs/PROTOCOL.md; user ID 0, the server's own address, for users): such keys only
/// come from a damaged or hand-made log, and they live in a small side table.
struct FlatTable<Key: FlatTableKey, Value>: Sequence {
    /// `Key.emptyMarker` marks the slot empty.
    private var slotKeys: [Key]
    private var slotValues: [Value?]
    /// Keys with message ID 0 (never sent by a conforming client), out of the way of the slots.
    private var reservedKeys: [Key: Value] = [:]
    private var mask: Int
    private let secret0: UInt64
    private let secret1: UInt64
    /// How many keys the slots hold.
    private var slotCount = 0

    /// How many keys the table holds.
    var count: Int { slotCount + reservedKeys.count }

    private static var empty: Key { Key.emptyMarker }

    init(minimumCapacity: Int = 0) {
        var capacity = 16
        while capacity * 3 < minimumCapacity * 4 { capacity *= 2 }
        slotKeys = Array(repeating: Self.empty, count: capacity)
        slotValues = Array(repeating: nil, count: capacity)
        mask = capacity - 1
        var random = SystemRandomNumberGenerator()
        secret0 = random.next() | 1
        secret1 = random.next() | 1
    }

    private func slot(for key: Key) -> Int {
        let (first, second) = key.hashHalves
        let product = (first ^ secret0).multipliedFullWidth(by: second ^ secret1)
        return Int(truncatingIfNeeded: product.high ^ product.low) & mask
    }

    /// The slot holding `key`, or the empty slot where it would go (`key` is not the marker).
    private func find(_ key: Key) -> (index: Int, found: Bool) {
        let start = slot(for: key)
        let mask = mask
        return slotKeys.withUnsafeBufferPointer { keys in
            var index = start
            while true {
                let candidate = keys[index]
                if candidate == key { return (index, true) }
                if candidate == Key.emptyMarker { return (index, false) }
                index = (index &+ 1) & mask
            }
        }
    }

    subscript(key: Key) -> Value? {
        get {
            guard key != Key.emptyMarker else { return reservedKeys[key] }
            let (index, found) = find(key)
            return found ? slotValues[index] : nil
        }
        set {
            if let newValue {
                updateValue(newValue, forKey: key)
            } else {
                removeValue(forKey: key)
            }
        }
    }

    /// Sets `key`'s value, returning the one it replaced (nil when the key is new).
    @discardableResult
    mutating func updateValue(_ value: Value, forKey key: Key) -> Value? {
        guard key != Key.emptyMarker else { return reservedKeys.updateValue(value, forKey: key) }
        var (index, found) = find(key)
        if found {
            defer { slotValues[index] = value }
            return slotValues[index]
        }
        if (slotCount + 1) * 4 > slotKeys.count * 3 {
            grow()
            index = find(key).index
        }
        slotKeys[index] = key
        slotValues[index] = value
        slotCount += 1
        return nil
    }

    /// Whether the table holds `key`.
    func contains(_ key: Key) -> Bool {
        key == Key.emptyMarker ? reservedKeys[key] != nil : find(key).found
    }

    /// Removes `key`, returning its value if it was there.
    @discardableResult
    mutating func removeValue(forKey key: Key) -> Value? {
        guard key != Key.emptyMarker else { return reservedKeys.removeValue(forKey: key) }
        var (hole, found) = find(key)
        guard found, let removed = slotValues[hole] else { return nil }
        slotKeys[hole] = Self.empty
        slotValues[hole] = nil
        slotCount -= 1
        // Shift back the entries of the run after the hole that may sit in it: an entry stays
        // where it is only if its home slot lies cyclically after the hole and up to its place.
        var next = (hole &+ 1) & mask
        while slotKeys[next] != Key.emptyMarker {
            let home = slot(for: slotKeys[next])
            let staysPut = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if !staysPut {
                slotKeys[hole] = slotKeys[next]
                slotValues[hole] = slotValues[next]
                slotKeys[next] = Self.empty
                slotValues[next] = nil
                hole = next
            }
            next = (next &+ 1) & mask
        }
        return removed
    }

    private mutating func grow() {
        let oldKeys = slotKeys
        let oldValues = slotValues
        slotKeys = Array(repeating: Self.empty, count: oldKeys.count * 2)
        slotValues = Array(repeating: nil, count: oldKeys.count * 2)
        mask = slotKeys.count - 1
        for (key, value) in zip(oldKeys, oldValues) where key != Key.emptyMarker {
            let index = find(key).index
            slotKeys[index] = key
            slotValues[index] = value
        }
    }

    /// Every key, in no particular order (a copy: the table may change while it is walked).
    var keys: [Key] { map(\.key) }

    func makeIterator() -> Iterator {
        Iterator(table: self)
    }

    struct Iterator: IteratorProtocol {
        private let table: FlatTable
        private var position = 0
        private var reserved: Dictionary<Key, Value>.Iterator

        fileprivate init(table: FlatTable) {
            self.table = table
            self.reserved = table.reservedKeys.makeIterator()
        }

        mutating func next() -> (key: Key, value: Value)? {
            while position < table.slotKeys.count {
                defer { position += 1 }
                if let value = table.slotValues[position] { return (table.slotKeys[position], value) }
            }
            return reserved.next().map { (key: $0.key, value: $0.value) }
        }
    }
}

/// A key of a ``FlatTable``.
protocol FlatTableKey: Hashable {
    /// The value that marks an empty slot; a real key equal to it lives in a side table.
    static var emptyMarker: Self { get }
    /// The key as two words, which the table mixes with its secrets and multiplies.
    var hashHalves: (UInt64, UInt64) { get }
}

/// The message log's deliveries by (recipient, sender, message ID).
typealias DeliveryTable<Value> = FlatTable<MessageLog.DeliveryKey, Value>

extension MessageLog.DeliveryKey: FlatTableKey {
    /// Message ID 0 is reserved (docs/PROTOCOL.md).
    static let emptyMarker = Self(recipient: UserID(rawValue: 0), sender: UserID(rawValue: 0), messageID: MessageID(0))

    var hashHalves: (UInt64, UInt64) {
        (messageID.rawValue, UInt64(sender.rawValue) << 32 | UInt64(recipient.rawValue))
    }
}

extension UserID: FlatTableKey {
    /// User ID 0 is the server's own address, never a recipient's queue or a registered user.
    static let emptyMarker = UserID(rawValue: 0)

    var hashHalves: (UInt64, UInt64) { (UInt64(rawValue), UInt64(rawValue) << 32 | 0x9E37_79B9) }
}
