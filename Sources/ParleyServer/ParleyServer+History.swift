public import Foundation
public import ParleyCore
import ParleyServerStore

// Message history (docs/PROTOCOL.md section 25): the application's view of everything the server
// keeps, and the retention sweep.

extension ParleyServer {
    /// One page of the server's message history: every conversation, whoever took part (users
    /// reach only their own through SEARCH_HISTORY).
    ///
    /// Messages are recorded in the background a moment after they are accepted; the search
    /// waits until everything accepted before it is written.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `historyUnavailable` when the server keeps
    ///   no history (``Configuration/historyDays`` is nil), `invalidHistoryCursor` for a cursor
    ///   it did not give, `shuttingDown` when it does not run.
    public func searchHistory(_ query: HistoryQuery) async throws(ParleyError) -> HistoryPage {
        let context = try requireRunningContext()
        let history = try Self.requireHistory(context)
        do {
            return try await context.blockingPool.runIfActive {
                history.waitForPendingWrites()
                return try history.store.search(query)
            }
        } catch {
            throw ServerConnectionHandler.parleyError(error)
        }
    }

    /// Waits until every message accepted (and every acknowledgement recorded) before the call
    /// is in the history.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `historyUnavailable` when the server keeps
    ///   no history.
    public func flushHistory() async throws(ParleyError) {
        let history = try Self.requireHistory(try requireRunningContext())
        await history.flush()
    }

    /// Deletes the history entries sent more than ``Configuration/historyDays`` before `now`
    /// (the server also does it once an hour, ``Configuration/pruneInterval``).
    ///
    /// - Returns: How many entries it deleted.
    @discardableResult
    public func sweepHistory(now: Date = Date()) async throws(ParleyError) -> Int {
        let history = try Self.requireHistory(try requireRunningContext())
        return try await history.sweep(now: now)
    }

    /// History items dropped since the server started because the background writer fell
    /// ``Configuration/historyQueueCapacity`` items behind (or a write failed); 0 without history.
    public var historyDroppedCount: Int {
        runningContext?.history?.droppedCount ?? 0
    }

    static func requireHistory(_ context: ServerContext) throws(ParleyError) -> HistoryRecorder {
        guard let history = context.history else {
            throw ParleyError(
                code: .historyUnavailable,
                message: "this server keeps no message history (start it with --history-days N)"
            )
        }
        return history
    }

    /// The retention sweep: at start, then every `interval`, until cancelled.
    static func sweepHistory(_ history: HistoryRecorder, every interval: Duration) async {
        while !Task.isCancelled {
            do {
                let deleted = try await history.sweep()
                if deleted > 0 {
                    history.logger.debug("history retention sweep", metadata: ["history.deleted": "\(deleted)"])
                }
            } catch {
                history.logger.warning("the history retention sweep failed", metadata: ["error": "\(error)"])
            }
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
        }
    }
}
