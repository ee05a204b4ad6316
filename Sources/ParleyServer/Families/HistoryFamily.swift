import ParleyCore
import ParleyServerStore
import ParleyWire

/// Message history (docs/PROTOCOL.md section 25): SEARCH_HISTORY.
///
/// A user searches only the entries it sent or received (the family adds that filter to every
/// query); the search runs off the loop on the blocking pool, once the history writer has
/// written what was queued before it (so a user finds the message it just sent), against the
/// history file's reader connections: it never waits for the message path nor holds it up.
final class HistoryFamily: RequestFamily, Sendable {
    private static let types: [FrameType] = [.searchHistory]

    var requestTypes: [FrameType] { Self.types }

    func handle(_ frame: Frame, in session: SessionContext) throws(ParleyError) {
        let user = try session.requireUser()
        let history = try ParleyServer.requireHistory(session.server)
        let request: Parley_V1_SearchHistoryRequest = try frame.decodeMeta()
        let query = try request.query()
        // What fits in one answer beside the entries' own fields.
        let budget = session.server.configuration.maximumFrameSize - 4096
        session.query(frame) { _ throws(ParleyError) -> Parley_V1_HistoryPage in
            // A search sees every message accepted before it (history is written in the background).
            history.waitForPendingWrites()
            return Parley_V1_HistoryPage(try history.store.search(query, participant: user, budget: budget))
        }
    }
}
