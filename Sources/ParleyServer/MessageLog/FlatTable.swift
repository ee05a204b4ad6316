import ParleyCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The message log's hash tables (its deliveries by (recipient, sender, message ID), its
/// recipients' queues and known users by user ID): open addressing with linear probing in flat
/// arrays, instead of a Swift `Dictionary` or `Set`.
///
/// The message path looks keys up several times per message (the de-duplication check, the
/// store, the acknowledgement, the recipient's queue), and a `Dictionary` seeds, feeds and
/// finalizes a SipHash hasher for each: about 7 % of the server's CPU under load, beside the
/// lookups themselves. Here a lookup hashes the 16-byte key with one 64 x 64 -> 128-bit multiply
/// of its two halves, each mixed with a secret drawn per process (folded, as wyhash and Go's
/// runtime hash do): message IDs are chosen by clients, and without the secret a client cannot
/// choose IDs that pile up in one run of slots.
///
/// Removal shifts the following entries back instead of leaving tombstones, so a table that
/// has seen many removals probes no further than a fresh one.
///
/// A table grows without a pause. The slots it outgrew stay beside the new ones (`draining`)
/// and their entries move over a few slots per change, so no single change rehashes a million
/// entries; and the new slots are not written when they are made (``FlatTableSlots``: zero
/// pages from the kernel, touched as they fill). A growth of the delivery table used to stop
/// the committer's thread for up to 40 ms (rehashing, then filling the new arrays), and every
/// message committed meanwhile waited: the largest share of the message path's p99.9 latency.
///
/// Keys and values are kept apart: a probe reads only keys, four to a cache line, and copies no
/// value (the log's values hold class references, which a copy retains and releases). One key
/// value marks an empty slot (``FlatTableKey/emptyMarker``, all zero bits: message ID 0 for
/// deliveries, reserved by docs/PROTOCOL.md; user ID 0, the server's own address, for users):
/// such keys only come from a damaged or hand-made log, and they live in a small side table.
///
/// A value type: a copy shares the slots until one of the two changes (copy on write).
struct FlatTable<Key: FlatTableKey, Value>: Sequence {
    private typealias Slots = FlatTableSlots<Key, Value>

    /// Owns the memory `slotKeys` and `slotValues` point into (and tells whether it is shared). The
    /// operations go through the pointers, not through this reference: a call on a class
    /// stored in a struct retains and releases it, which cost the message path more than the
    /// probes themselves.
    private var slots: Slots
    private var slotKeys: UnsafeMutablePointer<Key>
    private var slotValues: UnsafeMutablePointer<Value>
    private var mask: Int
    /// Keys with message ID 0 (never sent by a conforming client), out of the way of the slots.
    private var reservedKeys: [Key: Value] = [:]
    private let secret0: UInt64
    private let secret1: UInt64
    /// How many keys `slots` hold.
    private var slotCount = 0
    /// The slots before the last growth, while their entries move into `slots`. Nothing is
    /// added to them; an entry that leaves (moved, removed, or replaced in `slots`) keeps its key
    /// and is marked as left, so that probes for the keys after it still go on. All of them are
    /// dropped when the last entry moved.
    private var draining: Slots?
    /// How many entries of `draining` have not left.
    private var drainingLive = 0
    /// The slots of `draining` before this one were moved.
    private var drainingCursor = 0

    /// Slots moved from the outgrown ones per change of the table: growth from n to 2n slots
    /// ends after n / 32 changes, long before the new slots fill up (the moved entries fill
    /// three eighths of them, and each change adds at most one key). Smaller steps spread the
    /// work thinner but keep two sets of slots to probe for longer (8: 12 % less throughput at
    /// saturation; 64: latencies over 5 ms at 50,000 msg/s around the doublings).
    private static var drainStep: Int { 32 }

    /// How many keys the table holds.
    var count: Int { slotCount + drainingLive + reservedKeys.count }

    init(minimumCapacity: Int = 0) {
        var capacity = 16
        while capacity * 3 < minimumCapacity * 4 { capacity *= 2 }
        let slots = Slots(capacity: capacity)
        self.slots = slots
        slotKeys = slots.keys
        slotValues = slots.values
        mask = slots.mask
        (secret0, secret1) = flatTableSecrets
    }

    /// Makes `newSlots` the table's slots.
    private mutating func adopt(_ newSlots: Slots) {
        slots = newSlots
        slotKeys = newSlots.keys
        slotValues = newSlots.values
        mask = newSlots.mask
    }

    private func hash(_ key: Key) -> Int {
        let (first, second) = key.hashHalves
        let product = (first ^ secret0).multipliedFullWidth(by: second ^ secret1)
        return Int(truncatingIfNeeded: product.high ^ product.low)
    }

    /// The slot holding `key`, or the empty slot where it would go (`key` is not the marker).
    private func find(_ key: Key, hash: Int) -> (index: Int, found: Bool) {
        Slots.probe(for: key, from: hash, in: slotKeys, mask: mask)
    }

    /// Where `key` sits in the outgrown slots, if it is there and has not left.
    private func drainingSlot(of key: Key) -> Int? {
        guard let draining else { return nil }
        let (index, found) = draining.find(key, from: hash(key))
        return found && !draining.hasLeft(index) ? index : nil
    }

    subscript(key: Key) -> Value? {
        get {
            guard key != Key.emptyMarker else { return reservedKeys[key] }
            let (index, found) = find(key, hash: hash(key))
            if found { return slotValues[index] }
            guard let index = drainingSlot(of: key) else { return nil }
            return draining?.values[index]
        }
        set {
            if let newValue {
                updateValue(newValue, forKey: key)
            } else {
                removeValue(forKey: key)
            }
        }
    }

    /// Makes `slots` and `draining` this table's own before a change.
    private mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&slots) { adopt(slots.copy()) }
        if draining != nil, !isKnownUniquelyReferenced(&draining!) { draining = draining!.copy() }
    }

    /// Sets `key`'s value, returning the one it replaced (nil when the key is new).
    @discardableResult
    mutating func updateValue(_ value: Value, forKey key: Key) -> Value? {
        guard key != Key.emptyMarker else { return reservedKeys.updateValue(value, forKey: key) }
        makeUnique()
        if draining != nil { drainSome() }
        let hash = hash(key)
        var (index, found) = find(key, hash: hash)
        if found {
            defer { slotValues[index] = value }
            return slotValues[index]
        }
        // A key in the outgrown slots moves over now, with its new value.
        let replaced = drainingSlot(of: key).map { leaveDraining(at: $0) }
        if (slotCount + 1) * 4 > (mask + 1) * 3 {
            grow()
            index = find(key, hash: hash).index
        }
        slotKeys[index] = key
        (slotValues + index).initialize(to: value)
        slotCount += 1
        return replaced
    }

    /// Whether the table holds `key`.
    func contains(_ key: Key) -> Bool {
        guard key != Key.emptyMarker else { return reservedKeys[key] != nil }
        return find(key, hash: hash(key)).found || drainingSlot(of: key) != nil
    }

    /// Removes `key`, returning its value if it was there.
    @discardableResult
    mutating func removeValue(forKey key: Key) -> Value? {
        guard key != Key.emptyMarker else { return reservedKeys.removeValue(forKey: key) }
        makeUnique()
        if draining != nil { drainSome() }
        var (hole, found) = find(key, hash: hash(key))
        guard found else {
            return drainingSlot(of: key).map { leaveDraining(at: $0) }
        }
        slotKeys[hole] = Key.emptyMarker
        let removed = (slotValues + hole).move()
        slotCount -= 1
        // Shift back the entries of the run after the hole that may sit in it: an entry stays
        // where it is only if its home slot lies cyclically after the hole and up to its place.
        var next = (hole &+ 1) & mask
        while slotKeys[next] != Key.emptyMarker {
            let home = hash(slotKeys[next]) & mask
            let staysPut = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if !staysPut {
                slotKeys[hole] = slotKeys[next]
                (slotValues + hole).moveInitialize(from: slotValues + next, count: 1)
                slotKeys[next] = Key.emptyMarker
                hole = next
            }
            next = (next &+ 1) & mask
        }
        return removed
    }

    /// Doubles the slots; the old ones drain into them over the next changes.
    private mutating func grow() {
        // Drained long before the new slots fill up (see drainStep); finish it if not.
        while draining != nil { drainSome() }
        slots.startDraining()
        draining = slots
        drainingLive = slotCount
        drainingCursor = 0
        adopt(Slots(capacity: (mask + 1) * 2))
        slotCount = 0
    }

    /// Takes the value at `index` of the outgrown slots out of them.
    private mutating func leaveDraining(at index: Int) -> Value {
        drainingLive -= 1
        return draining!.leave(at: index)
    }

    /// Moves the entries of the next ``drainStep`` outgrown slots into the new ones.
    private mutating func drainSome() {
        guard let old = draining else { return }
        let end = Swift.min(drainingCursor + Self.drainStep, old.capacity)
        for index in drainingCursor..<end where old.holdsEntry(at: index) {
            let key = old.keys[index]
            let slot = find(key, hash: hash(key)).index
            slotKeys[slot] = key
            (slotValues + slot).initialize(to: old.leave(at: index))
            slotCount += 1
            drainingLive -= 1
        }
        drainingCursor = end
        if drainingLive == 0 || end == old.capacity {
            old.isEmpty = true  // every value left: nothing to deinitialize (no walk of the slots)
            draining = nil
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
        private var drainingPosition = 0
        private var reserved: Dictionary<Key, Value>.Iterator

        fileprivate init(table: FlatTable) {
            self.table = table
            self.reserved = table.reservedKeys.makeIterator()
        }

        mutating func next() -> (key: Key, value: Value)? {
            let slots = table.slots
            while position < slots.capacity {
                defer { position += 1 }
                if slots.keys[position] != Key.emptyMarker { return (slots.keys[position], slots.values[position]) }
            }
            if let draining = table.draining {
                while drainingPosition < draining.capacity {
                    defer { drainingPosition += 1 }
                    if draining.holdsEntry(at: drainingPosition) {
                        return (draining.keys[drainingPosition], draining.values[drainingPosition])
                    }
                }
            }
            return reserved.next().map { (key: $0.key, value: $0.value) }
        }
    }
}

/// The slots of a ``FlatTable``: `capacity` keys (a power of two), and a value beside each key
/// that is not the empty marker.
///
/// The slots come zeroed without being written: large ones straight from `mmap` (the kernel's
/// zero pages, touched as the table fills), small ones from `calloc`. The empty marker is all
/// zero bits, so zeroed keys are empty slots. Values are initialized only where a key is.
final class FlatTableSlots<Key: FlatTableKey, Value> {
    let capacity: Int
    let mask: Int
    let keys: UnsafeMutablePointer<Key>
    let values: UnsafeMutablePointer<Value>
    /// Bytes mapped for `keys` and for `values` (0: from calloc).
    private let keyMapping: Int
    private let valueMapping: Int
    /// For outgrown slots: one bit per slot whose entry left (its value is deinitialized).
    private var left: [UInt64] = []
    /// Set when no value is initialized any more.
    var isEmpty = false

    /// Keys this large or larger are mapped, not allocated (a fresh mapping is zero pages).
    private static var mappingThreshold: Int { 256 * 1024 }

    init(capacity: Int) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "a power of two")
        precondition(
            withUnsafeBytes(of: Key.emptyMarker) { $0.allSatisfy { $0 == 0 } },
            "the empty marker must be all zero bits")
        self.capacity = capacity
        self.mask = capacity - 1
        let keyBytes = capacity * MemoryLayout<Key>.stride
        let valueBytes = capacity * MemoryLayout<Value>.stride
        (keys, keyMapping) = Self.zeroedMemory(keyBytes, alignment: MemoryLayout<Key>.alignment, of: Key.self)
        (values, valueMapping) = Self.zeroedMemory(valueBytes, alignment: MemoryLayout<Value>.alignment, of: Value.self)
    }

    /// Zeroed memory for `bytes`: a fresh mapping when large (zero pages, touched as the table
    /// fills), else `calloc`. (Huge pages, `MADV_HUGEPAGE`, were tried: with the kernel's
    /// default defragmentation a fault could stall for 300 ms.)
    private static func zeroedMemory<T>(_ bytes: Int, alignment: Int, of type: T.Type) -> (UnsafeMutablePointer<T>, Int)
    {
        let bytes = Swift.max(bytes, 1)
        if bytes >= mappingThreshold {
            let address = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            if let address, address != MAP_FAILED {
                return (address.bindMemory(to: T.self, capacity: bytes / Swift.max(MemoryLayout<T>.stride, 1)), bytes)
            }
        }
        guard let zeroed = calloc(1, bytes) else { fatalError("out of memory for a table of \(bytes) bytes") }
        precondition(Int(bitPattern: zeroed) % alignment == 0)
        return (zeroed.bindMemory(to: T.self, capacity: bytes / Swift.max(MemoryLayout<T>.stride, 1)), 0)
    }

    private static func release<T>(_ pointer: UnsafeMutablePointer<T>, mapping: Int) {
        if mapping > 0 {
            munmap(pointer, mapping)
        } else {
            free(pointer)
        }
    }

    deinit {
        // Trivial values (the rounds' small tables of Void and Int64) need no walk of the slots.
        if !isEmpty, !_isPOD(Value.self) {
            for index in 0..<capacity where holdsEntry(at: index) {
                (values + index).deinitialize(count: 1)
            }
        }
        Self.release(values, mapping: valueMapping)
        Self.release(keys, mapping: keyMapping)
    }

    /// An independent copy (copy on write).
    func copy() -> FlatTableSlots {
        let copy = FlatTableSlots(capacity: capacity)
        copy.keys.update(from: keys, count: capacity)
        copy.left = left
        for index in 0..<capacity where holdsEntry(at: index) {
            (copy.values + index).initialize(to: values[index])
        }
        return copy
    }

    /// The slot holding `key`, or the empty slot where it would go (`key` is not the marker);
    /// `hash` is the key's hash before masking. (The table's own slots are probed through its
    /// pointers; this serves the outgrown ones.)
    func find(_ key: Key, from hash: Int) -> (index: Int, found: Bool) {
        Self.probe(for: key, from: hash, in: keys, mask: mask)
    }

    /// Linear probing in `keys` from `hash`'s home slot.
    static func probe(
        for key: Key,
        from hash: Int,
        in keys: UnsafeMutablePointer<Key>,
        mask: Int
    ) -> (index: Int, found: Bool) {
        var index = hash & mask
        while true {
            let candidate = keys[index]
            if candidate == key { return (index, true) }
            if candidate == Key.emptyMarker { return (index, false) }
            index = (index &+ 1) & mask
        }
    }

    // MARK: Outgrown slots

    /// From now on entries leave these slots (``leave(at:)``), keeping their keys.
    func startDraining() {
        left = Array(repeating: 0, count: (capacity + 63) / 64)
    }

    /// Whether slot `index` holds an entry: a key, and a value that did not leave.
    func holdsEntry(at index: Int) -> Bool {
        keys[index] != Key.emptyMarker && !hasLeft(index)
    }

    func hasLeft(_ index: Int) -> Bool {
        left.isEmpty ? false : left[index >> 6] & (1 << (index & 63)) != 0
    }

    /// Takes the value at `index` out; the key stays, marked as left.
    func leave(at index: Int) -> Value {
        left[index >> 6] |= 1 << (index & 63)
        return (values + index).move()
    }
}

/// The secrets the tables mix into their hashes, drawn once per process: a draw per table was
/// four `getrandom` system calls per commit round (the round's two small tables).
private let flatTableSecrets: (UInt64, UInt64) = {
    var random = SystemRandomNumberGenerator()
    return (random.next() | 1, random.next() | 1)
}()

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
