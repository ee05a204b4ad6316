import ParleyCore
import Testing

@testable import ParleyServer

@Suite("The message log's delivery table")
struct DeliveryTableTests {
    typealias Key = MessageLog.DeliveryKey

    @Test("inserts, updates, lookups and removals agree with a Dictionary throughout, across growth")
    func agreesWithDictionary() {
        var generator = SystemRandomNumberGenerator()
        // Few recipients and senders and small message IDs: many keys share parts, and removals
        // happen in the middle of long runs. Message ID 0 (reserved, kept beside the slots) too.
        Self.exercise(steps: 200_000) {
            Key(
                recipient: UserID(UInt32.random(in: 1000...1003, using: &generator)),
                sender: UserID(UInt32.random(in: 1000...1003, using: &generator)),
                messageID: MessageID(UInt64.random(in: 0...3000, using: &generator))
            )
        }
    }

    @Test("keyed by user ID (the log's queues and known users): agrees with a Dictionary, user 0 included")
    func userKeys() {
        var generator = SystemRandomNumberGenerator()
        Self.exercise(steps: 100_000) { UserID(UInt32.random(in: 0...2000, using: &generator)) }
    }

    /// Random inserts, updates, removals and lookups of `randomKey()`s on a table and a
    /// `Dictionary`, which must agree throughout and at the end, walked or looked up.
    private static func exercise<K: FlatTableKey>(steps: Int, randomKey: () -> K) {
        var generator = SystemRandomNumberGenerator()
        var table = FlatTable<K, Int>()
        var reference: [K: Int] = [:]
        for step in 0..<steps {
            let key = randomKey()
            switch Int.random(in: 0..<10, using: &generator) {
            case 0..<5:
                table[key] = step
                reference[key] = step
            case 5..<8:
                #expect(table.removeValue(forKey: key) == reference.removeValue(forKey: key))
            default:
                #expect(table[key] == reference[key])
                #expect(table.contains(key) == (reference[key] != nil))
            }
            if step % 20_000 == 0 { #expect(table.count == reference.count) }
        }
        #expect(table.count == reference.count)
        for (key, value) in reference { #expect(table[key] == value) }
        var seen: [K: Int] = [:]
        for (key, value) in table {
            #expect(seen[key] == nil, "a key came twice")
            seen[key] = value
        }
        #expect(seen == reference)
        #expect(Set(table.keys) == Set(reference.keys))
    }

    @Test("while a growth drains, keys in the outgrown slots are found, replaced, removed and walked, each once")
    func changesWhileGrowing() {
        var table = FlatTable<UserID, Int>()
        var reference: [UserID: Int] = [:]
        // 12 keys fill 16 slots to three quarters: the 13th doubles them, and the next changes
        // (64 slots each) drain the old ones. Repeated up to 49,152 keys, with changes of old
        // keys right after every growth.
        var next: UInt32 = 1
        var generator = SystemRandomNumberGenerator()
        while next < 49_152 {
            let target = Int(next) * 2
            while Int(next) < target {
                table[UserID(next)] = Int(next)
                reference[UserID(next)] = Int(next)
                next += 1
                // An old key replaced, one removed, one looked up: most still wait in old slots.
                let old = UserID(UInt32.random(in: 1..<next, using: &generator))
                switch Int.random(in: 0..<3, using: &generator) {
                case 0:
                    #expect(table.updateValue(-1, forKey: old) == reference.updateValue(-1, forKey: old))
                case 1:
                    #expect(table.removeValue(forKey: old) == reference.removeValue(forKey: old))
                default:
                    #expect(table[old] == reference[old])
                }
                #expect(table.count == reference.count)
            }
            var walked: [UserID: Int] = [:]
            for (key, value) in table {
                #expect(walked[key] == nil, "a key came twice")
                walked[key] = value
            }
            #expect(walked == reference)
        }
        for (key, value) in reference { #expect(table[key] == value && table.contains(key)) }
    }

    @Test("a copy keeps its keys and values when the original changes, also in the middle of a growth")
    func copyOnWrite() {
        var table = FlatTable<UserID, String>()
        for user in 1...25 { table[UserID(UInt32(user))] = "v\(user)" }  // grew at 13 and 25: draining
        let copy = table
        table[UserID(3)] = "changed"
        table.removeValue(forKey: UserID(4))
        for user in 26...40_000 { table[UserID(UInt32(user))] = "w" }
        #expect(copy.count == 25)
        #expect(copy[UserID(3)] == "v3" && copy[UserID(4)] == "v4" && copy[UserID(26)] == nil)
        #expect(Dictionary(uniqueKeysWithValues: copy.map { ($0.key, $0.value) }).count == 25)
        #expect(table.count == 39_999 && table[UserID(3)] == "changed" && table[UserID(4)] == nil)
    }

    @Test("removing everything, in any order, leaves an empty table that still finds nothing")
    func removeAll() {
        var table = DeliveryTable<Int>(minimumCapacity: 5)
        let keys = (1...5000).map {
            Key(recipient: UserID(UInt32($0 % 7 + 1000)), sender: UserID(1000), messageID: MessageID(UInt64($0)))
        }
        for (value, key) in keys.enumerated() { table[key] = value }
        #expect(table.count == keys.count)
        for key in keys.shuffled() { #expect(table.removeValue(forKey: key) != nil) }
        #expect(table.count == 0)
        #expect(keys.allSatisfy { table[$0] == nil })
        #expect(table.keys.isEmpty)
    }
}
