import Foundation
import Logging
public import ParleyCore
import ParleyNodeStore

// Message history on a node: what it sent and received on every route (direct, server, queued),
// kept in its registry (docs/PROTOCOL.md section 25 describes the query; a node's history is
// local, so it works in peer-to-peer mode).

extension ParleyNode {
    /// One page of this node's history: the messages it sent and received, with their routes.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidHistoryCursor` for a cursor this
    ///   node did not give, `invalidRequest` for a query beyond the limits, `storageError` when
    ///   the registry cannot be read.
    public func searchHistory(_ query: HistoryQuery) async throws(ParleyError) -> HistoryPage {
        try await registry.run { registry throws(ParleyError) in try registry.searchHistory(query) }
    }

    /// One page of the history of the node kept in `dataDirectory`, whether that node runs (in
    /// another process) or not (`parley history --data DIR`).
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `storageError` when the directory holds no
    ///   node data; otherwise as ``searchHistory(_:)``.
    public static func searchHistory(dataDirectory: String, _ query: HistoryQuery) throws(ParleyError) -> HistoryPage {
        try existingRegistry(dataDirectory: dataDirectory).searchHistory(query)
    }

    /// Records a message this node sent to a user, with the route it took (again with the new
    /// route when a queued message leaves the outbox). Messages to a node (not a user) are not
    /// recorded. History is a record: a failure is logged, never thrown at the sender.
    func recordSent(_ body: MessageBody, to recipient: Recipient, id: MessageID, sentAt: Date, route: Route) {
        guard case .user(let user) = recipient else { return }
        let entry = HistoryEntry(
            messageID: id,
            sender: ownUser ?? UserID(0),
            recipient: user,
            kind: body.isText ? .text : .binary,
            body: body.bytes,
            sentAt: sentAt,
            deliveredAt: route == .direct ? Date() : nil,
            route: HistoryEntry.Route(rawValue: route.rawValue)
        )
        let logger = self.logger
        registry.submit { registry throws(ParleyError) in
            try registry.recordHistory([entry])
        } failed: { error in
            logger.warning("cannot record history", metadata: ["error": "\(error)"])
        }
    }

    /// Records the delivery receipt of a message this node sent through the server.
    func recordReceipt(_ receipt: DeliveryReceipt) {
        let (logger, sender) = (self.logger, ownUser ?? UserID(0))
        registry.submit { registry throws(ParleyError) in
            try registry.recordHistoryDelivery(
                sender: sender, messageID: receipt.messageID, recipient: receipt.recipient, at: receipt.acknowledgedAt)
        } failed: { error in
            logger.warning("cannot record a delivery in history", metadata: ["error": "\(error)"])
        }
    }

    /// The history entry of a message this node received.
    static func receivedEntry(_ message: Message, recipient: UserID?, route: Route) -> HistoryEntry {
        HistoryEntry(
            messageID: message.id,
            sender: message.sender,
            recipient: recipient ?? message.recipients.first ?? UserID(0),
            kind: message.body.isText ? .text : .binary,
            body: message.body.bytes,
            sentAt: message.sentAt,
            deliveredAt: Date(),
            route: HistoryEntry.Route(rawValue: route.rawValue)
        )
    }

    static func recordHistory(_ entries: [HistoryEntry], in registry: NodeRegistry, logger: Logger) {
        do {
            try registry.recordHistory(entries)
        } catch {
            logger.warning("cannot record history", metadata: ["error": "\(error)"])
        }
    }
}
