import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import Testing

@Suite("Message history", .timeLimit(.minutes(1)))
struct HistoryTests {
    /// Sends one message and waits for its delivery receipt when the recipient is online: the
    /// server records the acknowledgement in history before it pushes the receipt.
    private func send(
        _ body: MessageBody, from sender: TestClient, to recipient: UserID, sentAt: Date, online: Bool = true
    ) async throws -> MessageID {
        let id = MessageID.random()
        let skip = sender.events.items.count
        let results = try await sender.client.send(body, to: [recipient], id: id, wantReceipt: online, sentAt: sentAt)
        #expect(results.allSatisfy { $0.isAccepted })
        if online {
            try await sender.waitForEvent("the receipt of \(id)", after: skip) { event -> Bool? in
                if case .deliveryReceipt(let receipt) = event, receipt.messageID == id { return true }
                return nil
            }
        }
        return id
    }

    @Test("every filter of a search, FTS contains ignoring case and diacritics, and access control")
    func everyFilter() async throws {
        try await withTestServer(ServerChanges { $0.historyDays = 30 }) { server in
            try await withTestClients(4, of: server.clientConfiguration) { clients in
                let (aliceClient, bobClient, carolClient, daveClient) = (clients[0], clients[1], clients[2], clients[3])
                let alice = try await aliceClient.register("alice")
                let bob = try await bobClient.register("bob")
                let carol = try await carolClient.register("carol")
                let dave = try await daveClient.register("dave")
                try await daveClient.client.logOff()
                let start = Date(timeIntervalSince1970: 1_800_000_000)
                let hour: TimeInterval = 3600
                let before = Date()

                let invoice = try await send(
                    .text("Hello Bob, the INVOICE is ready"), from: aliceClient, to: bob, sentAt: start)
                let blob = try await send(.binary([1, 2, 3]), from: aliceClient, to: bob, sentAt: start + hour)
                let cafe = try await send(
                    .text("Meeting at the Café at noon"), from: aliceClient, to: carol, sentAt: start + 2 * hour)
                let reunion = try await send(
                    .text("Réunion demain"), from: carolClient, to: alice, sentAt: start + 3 * hour)
                let paid = try await send(.text("invoice paid."), from: bobClient, to: alice, sentAt: start + 4 * hour)
                let pending = try await send(
                    .text("are you there?"), from: aliceClient, to: dave, sentAt: start + 5 * hour, online: false)
                try await server.server.flushHistory()

                let me = aliceClient.client
                func ids(_ query: HistoryQuery, client: ParleyClient? = nil) async throws -> [MessageID] {
                    try await (client ?? me).searchHistory(query).entries.map(\.messageID)
                }
                // Newest first by default; oldest first on request.
                #expect(try await ids(HistoryQuery()) == [pending, paid, reunion, cafe, blob, invoice])
                #expect(
                    try await ids(HistoryQuery(order: .oldestFirst)) == [invoice, blob, cafe, reunion, paid, pending])
                // Participants.
                #expect(try await ids(HistoryQuery(conversationWith: [bob])) == [paid, blob, invoice])
                #expect(try await ids(HistoryQuery(senders: [alice])) == [pending, cafe, blob, invoice])
                #expect(try await ids(HistoryQuery(recipients: [alice])) == [paid, reunion])
                #expect(try await ids(HistoryQuery(senders: [bob], recipients: [alice])) == [paid])
                // Text: words in any case, diacritics folded, prefix and exact.
                #expect(try await ids(HistoryQuery(text: .init(.contains, "invoice"))) == [paid, invoice])
                #expect(try await ids(HistoryQuery(text: .init(.contains, "CAFE"))) == [cafe])
                #expect(try await ids(HistoryQuery(text: .init(.contains, "reunion demain"))) == [reunion])
                #expect(try await ids(HistoryQuery(text: .init(.contains, "demain reunion"))).isEmpty)
                #expect(try await ids(HistoryQuery(text: .init(.prefix, "hello bo"))) == [invoice])
                #expect(try await ids(HistoryQuery(text: .init(.prefix, "bob"))).isEmpty)
                #expect(try await ids(HistoryQuery(text: .init(.exact, "INVOICE PAID."))) == [paid])
                #expect(try await ids(HistoryQuery(text: .init(.exact, "invoice paid"))).isEmpty)
                #expect(try await ids(HistoryQuery(text: .init(.contains, "?"))) == [pending])
                // Kind, delivery, time ranges.
                #expect(try await ids(HistoryQuery(kinds: [.binary])) == [blob])
                #expect(try await ids(HistoryQuery(kinds: [.file])).isEmpty)
                #expect(try await ids(HistoryQuery(delivery: .undelivered)) == [pending])
                #expect(try await ids(HistoryQuery(delivery: .delivered)).count == 5)
                #expect(
                    try await ids(HistoryQuery(sentAfter: start + hour, sentBefore: start + 3 * hour)) == [cafe, blob])
                #expect(try await ids(HistoryQuery(deliveredAfter: before)).count == 5)
                #expect(try await ids(HistoryQuery(deliveredBefore: before)).isEmpty)
                // What an entry holds.
                let entry = try #require(try await me.searchHistory(HistoryQuery(kinds: [.binary])).entries.first)
                #expect(entry.sender == alice && entry.recipient == bob && entry.body == [1, 2, 3])
                #expect(entry.sentAt == start + hour && entry.deliveredAt != nil && entry.route == nil)

                // Access control: carol sees her own conversations only, whatever she asks.
                let carolSees = try await ids(HistoryQuery(), client: carolClient.client)
                #expect(carolSees == [reunion, cafe])
                #expect(try await ids(HistoryQuery(conversationWith: [bob]), client: carolClient.client).isEmpty)
                #expect(try await ids(HistoryQuery(senders: [bob]), client: carolClient.client).isEmpty)
                #expect(
                    try await ids(HistoryQuery(text: .init(.contains, "invoice")), client: carolClient.client).isEmpty)
                // The server application sees everything.
                let all = try await server.server.searchHistory(HistoryQuery(conversationWith: [bob]))
                #expect(all.entries.map(\.messageID) == [paid, blob, invoice])
                #expect(try await server.server.searchHistory(HistoryQuery()).entries.count == 6)
                // A guest cannot search.
                try await bobClient.client.logOff()
                try await expectError(.notLoggedOn) { try await bobClient.client.searchHistory(HistoryQuery()) }
            }
        }
    }

    @Test("paging with a cursor, both ways, covers every entry once; a foreign cursor is refused")
    func paging() async throws {
        try await withTestServer(ServerChanges { $0.historyDays = 30 }) { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                var sent: [MessageID] = []
                let start = Date()
                for index in 0..<25 {
                    sent.append(
                        try await send(
                            .text("note \(index)"), from: clients[0], to: bob, sentAt: start + Double(index)))
                }
                try await server.server.flushHistory()
                for order in HistoryQuery.Order.allCases {
                    var query = HistoryQuery(order: order, limit: 10)
                    var pages: [[MessageID]] = []
                    repeat {
                        let page = try await clients[0].client.searchHistory(query)
                        pages.append(page.entries.map(\.messageID))
                        query.cursor = page.nextCursor
                    } while query.cursor != nil
                    #expect(pages.map(\.count) == [10, 10, 5])
                    #expect(pages.flatMap { $0 } == (order == .oldestFirst ? sent : Array(sent.reversed())))
                }
                // The same cursor with another filter pages that filter.
                let first = try await clients[1].client.searchHistory(HistoryQuery(limit: 3))
                let cursor = try #require(first.nextCursor)
                let next = try await clients[1].client.searchHistory(
                    HistoryQuery(text: .init(.contains, "note"), limit: 3, cursor: cursor))
                #expect(next.entries.map(\.messageID) == Array(Array(sent.reversed())[3..<6]))
                try await expectError(.invalidHistoryCursor) {
                    try await clients[0].client.searchHistory(HistoryQuery(cursor: "not-a-cursor"))
                }
            }
        }
    }

    @Test("a server without history answers HISTORY_UNAVAILABLE, to users and to the application")
    func historyOff() async throws {
        try await withTestServer { server in
            try await withTestClient(of: server.clientConfiguration) { client in
                _ = try await client.register("alice")
                try await expectError(.historyUnavailable) { try await client.client.searchHistory(HistoryQuery()) }
            }
            try await expectError(.historyUnavailable) { try await server.server.searchHistory(HistoryQuery()) }
            #expect(server.server.historyDroppedCount == 0)
        }
    }

    @Test("the retention sweep deletes entries sent before the retention period")
    func retention() async throws {
        try await withTestServer(ServerChanges { $0.historyDays = 2 }) { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                // Neither is older than 2 days now (the server's own sweep, at start, keeps both).
                let now = Date()
                let old = try await send(.text("old"), from: clients[0], to: bob, sentAt: now - 1.5 * 86400)
                let recent = try await send(.text("recent"), from: clients[0], to: bob, sentAt: now - 0.5 * 86400)
                #expect(
                    try await server.server.searchHistory(HistoryQuery()).entries.map(\.messageID) == [recent, old])
                #expect(try await server.server.sweepHistory(now: now + 86400) == 1)
                #expect(try await server.server.searchHistory(HistoryQuery()).entries.map(\.messageID) == [recent])
                #expect(try await server.server.sweepHistory(now: now + 2 * 86400) == 1)
                #expect(try await server.server.searchHistory(HistoryQuery()).entries.isEmpty)
            }
        }
    }
}
