import Synchronization

/// One shared copy of each of a few strings many connections hold (their clients' agents).
///
/// Up to `limit` distinct strings are kept, for the life of the server; beyond that a string is
/// returned as it came, so a client sending made-up agents cannot grow the table.
final class InternedStrings: Sendable {
    private let limit: Int
    private let strings = Mutex<Set<String>>([])

    init(limit: Int) {
        self.limit = limit
    }

    /// The kept copy equal to `string`, keeping `string` if there is room.
    func intern(_ string: String) -> String {
        strings.withLock { strings in
            if let kept = strings.firstIndex(of: string) { return strings[kept] }
            if strings.count < limit { strings.insert(string) }
            return string
        }
    }
}
