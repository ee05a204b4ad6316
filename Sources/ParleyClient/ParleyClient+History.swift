public import ParleyCore
import ParleyWire

// Message history (docs/PROTOCOL.md section 25).

extension ParleyClient {
    /// One page of the server's history of this user's conversations: the messages it sent or
    /// received, filtered and sorted as `query` says. Pass the page's
    /// ``/ParleyCore/HistoryPage/nextCursor`` as the query's cursor for the next page.
    ///
    /// ```swift
    /// var query = HistoryQuery(conversationWith: [1001], text: .init(.contains, "invoice"))
    /// repeat {
    ///     let page = try await client.searchHistory(query)
    ///     for entry in page.entries { print(entry.sender, entry.text ?? "") }
    ///     query.cursor = page.nextCursor
    /// } while query.cursor != nil
    /// ```
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `historyUnavailable` when the server keeps
    ///   no history, `invalidHistoryCursor` for a cursor it did not give, `invalidRequest` for a
    ///   query beyond the limits of ``/ParleyCore/HistoryQuery``.
    public func searchHistory(_ query: HistoryQuery) async throws(ParleyError) -> HistoryPage {
        try query.validate()
        let page: Parley_V1_HistoryPage = try await request(.searchHistory, Parley_V1_SearchHistoryRequest(query))
        return try page.page()
    }
}
