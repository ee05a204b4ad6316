import ParleyCore

/// The message log's deliveries by (recipient, sender, message ID): open addressing with linear
/// probing in one flat array, instead of a Swift `Dictionary`.
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
struct DeliveryTable<Value>: Sequence {
    typealias Key = MessageLog.DeliveryKey

    private struct Slot {
        var key: Key
        var value: Value
    }

    private var slots: [Slot?]
    private var mask: Int
    private let secret0: UInt64
    private let secret1: UInt64
    /// How many keys the table holds.
    private(set) var count = 0

    init(minimumCapacity: Int = 0) {
        var capacity = 16
        while capacity * 3 < minimumCapacity * 4 { capacity *= 2 }
        slots = Array(repeating: nil, count: capacity)
        mask = capacity - 1
        var random = SystemRandomNumberGenerator()
        secret0 = random.next() | 1
        secret1 = random.next() | 1
    }

    private func slot(for key: Key) -> Int {
        let a = key.messageID.rawValue ^ secret0
        let b = (UInt64(key.sender.rawValue) << 32 | UInt64(key.recipient.rawValue)) ^ secret1
        let product = a.multipliedFullWidth(by: b)
        return Int(truncatingIfNeeded: product.high ^ product.low) & mask
    }

    /// The slot holding `key`, or the empty slot where it would go.
    private func find(_ key: Key) -> (index: Int, found: Bool) {
        var index = slot(for: key)
        while let slot = slots[index] {
            if slot.key == key { return (index, true) }
            index = (index &+ 1) & mask
        }
        return (index, false)
    }

    subscript(key: Key) -> Value? {
        get {
            let (index, found) = find(key)
            return found ? slots[index]?.value : nil
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
        var (index, found) = find(key)
        if found {
            defer { slots[index]?.value = value }
            return slots[index]?.value
        }
        if (count + 1) * 4 > slots.count * 3 {
            grow()
            index = find(key).index
        }
        slots[index] = Slot(key: key, value: value)
        count += 1
        return nil
    }

    /// Whether the table holds `key`.
    func contains(_ key: Key) -> Bool { find(key).found }

    /// Removes `key`, returning its value if it was there.
    @discardableResult
    mutating func removeValue(forKey key: Key) -> Value? {
        var (hole, found) = find(key)
        guard found, let removed = slots[hole]?.value else { return nil }
        slots[hole] = nil
        count -= 1
        // Shift back the entries of the run after the hole that may sit in it: an entry stays
        // where it is only if its home slot lies cyclically after the hole and up to its place.
        var next = (hole &+ 1) & mask
        while let moving = slots[next] {
            let home = slot(for: moving.key)
            let staysPut = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if !staysPut {
                slots[hole] = moving
                slots[next] = nil
                hole = next
            }
            next = (next &+ 1) & mask
        }
        return removed
    }

    private mutating func grow() {
        let old = slots
        slots = Array(repeating: nil, count: old.count * 2)
        mask = slots.count - 1
        for case let slot? in old {
            slots[find(slot.key).index] = slot
        }
    }

    /// Every key, in no particular order (a copy: the table may change while it is walked).
    var keys: [Key] { compactMap { $0.key } }

    func makeIterator() -> some IteratorProtocol<(key: Key, value: Value)> {
        slots.lazy.compactMap { $0.map { (key: $0.key, value: $0.value) } }.makeIterator()
    }
}
