package import ParleyCore
import ParleySQLite

package import struct Foundation.Date

extension NodeRegistry {
    /// Records messages this node sent or received (one entry per recipient), with their route.
    /// An entry already recorded keeps its row and takes the new route (a queued message that
    /// left by another route) and its first delivery time.
    package func recordHistory(_ entries: [HistoryEntry]) throws(ParleyError) {
        guard !entries.isEmpty else { return }
        try write("recording history") { db in try HistoryTable.insert(entries, into: db) }
    }

    /// One page of `query`'s results from this node's history.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidHistoryCursor` for a cursor the
    ///   registry did not give, `invalidRequest` for a query that breaks the limits.
    package func searchHistory(_ query: HistoryQuery) throws(ParleyError) -> HistoryPage {
        try query.validate()
        return try read("searching history") { db in try HistoryTable.search(query, participant: nil, in: db) }
    }
}

extension NodeRegistry {
    /// Records that `recipient` acknowledged a message this node sent (a delivery receipt); an
    /// entry already marked delivered keeps its first time.
    package func recordHistoryDelivery(
        sender: UserID, messageID: MessageID, recipient: UserID, at date: Date
    ) throws(ParleyError) {
        try write("recording a delivery in history") { db in
            try HistoryTable.markDelivered(
                [(sender: sender, messageID: messageID, recipient: recipient, at: date)], in: db)
        }
    }
}
