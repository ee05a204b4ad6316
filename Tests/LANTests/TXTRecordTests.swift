import ParleyCore
import ParleyDiscovery
import Testing

@Suite("TXT record encoding and decoding")
struct TXTRecordTests {
    private func text(_ entries: [[UInt8]]) -> [String] {
        entries.map { String(decoding: $0, as: UTF8.self) }
    }

    private func bytes(_ strings: [String]) -> [[UInt8]] {
        strings.map { Array($0.utf8) }
    }

    @Test func encodesEveryKeyWithVersionFirst() throws {
        let record = ServiceRecord(
            instanceName: "alice's laptop", port: 7000, nodeID: "n-1", userID: 42, userName: "Alice Ex",
            server: "srv.example", status: "online")
        #expect(
            text(try TXTRecord(record).encoded()) == [
                "pv=1", "node=\(Lab.nodeID("n-1"))", "uid=42", "name=Alice Ex", "srv=srv.example", "st=online",
            ])
    }

    @Test func leavesOutAbsentAndEmptyFields() throws {
        let record = ServiceRecord(instanceName: "x", port: 1, nodeID: "n", userName: "", server: nil, status: "")
        #expect(text(try TXTRecord(record).encoded()) == ["pv=1", "node=\(Lab.nodeID("n"))"])
    }

    @Test(arguments: [
        TXTRecord(nodeID: "n"),
        TXTRecord(nodeID: "node-🦜", userID: 0, userName: "Zoë «Z» = name", server: "s=1", status: "away"),
        TXTRecord(nodeID: "x", userID: UInt32.max, userName: "名前", server: "srv", status: "busy"),
    ])
    func roundTrips(record: TXTRecord) throws {
        let decoded = TXTRecord(decoding: try record.encoded())
        #expect(decoded == record)
    }

    @Test func decodingIgnoresOrderAndKeyCase() {
        let decoded = TXTRecord(decoding: bytes(["ST=away", "uid=7", "Node=\(Lab.nodeID("abc"))", "PV=1"]))
        #expect(decoded == TXTRecord(nodeID: "abc", userID: 7, status: "away"))
    }

    @Test func firstOccurrenceOfAKeyWins() {
        let decoded = TXTRecord(
            decoding: bytes([
                "pv=1", "node=\(Lab.nodeID("first"))", "node=\(Lab.nodeID("second"))", "NODE=\(Lab.nodeID("third"))",
            ]))
        #expect(decoded?.nodeID == "first")
    }

    @Test(arguments: [
        [String](),
        ["node=\(Lab.nodeID("a"))"],  // no version
        ["pv=1"],  // no node
        ["pv=0", "node=\(Lab.nodeID("a"))"],
        ["pv=-1", "node=\(Lab.nodeID("a"))"],
        ["pv= 1", "node=\(Lab.nodeID("a"))"],
        ["pv=1x", "node=\(Lab.nodeID("a"))"],
        ["pv=99999999999999999999", "node=\(Lab.nodeID("a"))"],
        ["pv", "node=\(Lab.nodeID("a"))"],  // key without value
        ["pv=1", "node"],
        ["pv=1", "node="],
        ["pv=1", "node=a\u{1}b"],  // control character
        ["pv=1", "node=n-1"],  // not a node ID
        ["pv=1", "node=\(String(Lab.nodeID("a").dropLast()))"],  // one character short
        ["node", "pv=1", "node=\(Lab.nodeID("a"))"],  // the first "node" (no value) wins
    ])
    func rejectsRecordsWithoutUsableVersionOrNode(strings: [String]) {
        #expect(TXTRecord(decoding: bytes(strings)) == nil)
    }

    @Test func toleratesGarbageAroundAValidRecord() {
        var entries = bytes(["pv=1", "node=\(Lab.nodeID("n"))", "uid=12"])
        entries.append([])  // empty string
        entries.append([0x3D, 0x78])  // "=x": empty key
        entries.append([0xFF, 0xFE, 0x3D, 0x31])  // non-ASCII key
        entries.append(Array("name=".utf8) + [0xC3, 0x28])  // invalid UTF-8 value
        entries.append(Array("srv=".utf8) + [UInt8](repeating: 0x41, count: 300))  // longer than DNS allows
        entries.append(Array("st=\u{0}".utf8))
        entries.append([UInt8](repeating: 0, count: 64))
        let decoded = TXTRecord(decoding: entries)
        #expect(decoded == TXTRecord(nodeID: "n", userID: 12, userName: nil, server: nil, status: "\u{0}"))
    }

    @Test(arguments: ["uid=", "uid=-1", "uid=4294967296", "uid=12a", "uid=+5", "uid= 5", "uid=0x10"])
    func unusableUserIDReadsAsNil(entry: String) {
        let decoded = TXTRecord(decoding: bytes(["pv=1", "node=\(Lab.nodeID("n"))", entry]))
        #expect(decoded == TXTRecord(nodeID: "n"))
    }

    @Test func newerVersionsAreReadForTheKnownKeys() {
        let decoded = TXTRecord(decoding: bytes(["pv=7", "node=\(Lab.nodeID("n"))", "future=thing", "st=ok"]))
        #expect(decoded == TXTRecord(version: 7, nodeID: "n", status: "ok"))
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        var generator = SplitMix64(seed: 0x5EED)
        for _ in 0..<2000 {
            let count = Int(generator.next() % 8)
            var entries: [[UInt8]] = []
            for _ in 0..<count {
                let length = Int(generator.next() % 300)
                entries.append((0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
            }
            if generator.next() % 2 == 0 { entries.append(Array("pv=1".utf8)) }
            if generator.next() % 2 == 0 { entries.append(Array("node=\(Lab.nodeID("z"))".utf8)) }
            _ = TXTRecord(decoding: entries)
        }
    }

    // MARK: - Limits

    @Test func everyEncodedEntryFitsIn255Bytes() throws {
        let long = String(repeating: "é", count: 400)  // 800 bytes
        let record = TXTRecord(nodeID: "n", userName: long, status: long)
        let entries = try record.encoded()
        #expect(entries.allSatisfy { $0.count <= TXTRecord.maximumEntryLength })
        let decoded = try #require(TXTRecord(decoding: entries))
        // cut on a character boundary: 250 bytes of "name=" budget hold 125 "é"
        #expect(decoded.userName == String(repeating: "é", count: 125))
        #expect(decoded.status == String(repeating: "é", count: 126))
    }

    @Test func truncationKeepsWholeGraphemes() throws {
        let family = "👨‍👩‍👧‍👦"  // 25 bytes, one Character
        let name = String(repeating: "a", count: 240) + family
        let entries = try TXTRecord(nodeID: "n", userName: name).encoded()
        let decoded = try #require(TXTRecord(decoding: entries))
        #expect(decoded.userName == String(repeating: "a", count: 240))
    }

    @Test func aServerThatDoesNotFitIsRejected() {
        let fits = String(repeating: "s", count: 251)  // "srv=" + 251 = 255
        #expect(throws: Never.self) { try TXTRecord(nodeID: "n", server: fits).encoded() }
        #expect(throws: DiscoveryError.self) { try TXTRecord(nodeID: "n", server: fits + "s").encoded() }
    }

    @Test func theNodeIDTravelsInItsCanonicalFormAndIsReadInAnyCase() throws {
        let id = Lab.nodeID("n")
        #expect(text(try TXTRecord(nodeID: "n").encoded()) == ["pv=1", "node=\(id)"])
        let grouped = try #require(NodeID(id)).groupedDescription.uppercased()
        #expect(TXTRecord(decoding: bytes(["pv=1", "node=\(grouped)"]))?.nodeID.description == id)
    }

    @Test func instanceNameMustBeOneDNSLabel() {
        let ok = ServiceRecord(instanceName: String(repeating: "x", count: 63), port: 1, nodeID: "n")
        #expect(throws: Never.self) { try ok.validate() }
        let long = ServiceRecord(instanceName: String(repeating: "x", count: 64), port: 1, nodeID: "n")
        let error = #expect(throws: DiscoveryError.self) { try long.validate() }
        #expect(error?.code == .invalidRecord)
        #expect(throws: DiscoveryError.self) { try ServiceRecord(instanceName: "", port: 1, nodeID: "n").validate() }
    }
}

/// A small deterministic generator, so the garbage test is the same on every run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
