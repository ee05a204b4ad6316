public import ParleyCore

extension NodeID {
    /// A node ID for a readable label such as "n1", for tests: the label's UTF-8 bytes, padded with
    /// spaces (or cut) to a digest's 32. The same label always gives the same ID; no key has it.
    /// (`scripts/bench-lan.sh` derives the same with `base32`.)
    public static func named(_ label: String) -> NodeID {
        let bytes = Array(label.utf8.prefix(digestLength))
        let padded = bytes + Array(repeating: UInt8(ascii: " "), count: digestLength - bytes.count)
        // 32 bytes: always a digest's length.
        return NodeID(digest: padded)!
    }
}
