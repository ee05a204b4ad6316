import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Testing

@Suite("Messages", .timeLimit(.minutes(1)))
struct MessagingTests {
    @Test("text and binary messages reach one and several recipients, with a result for each")
    func sendToRecipients() async throws {
        try await withTestServer { server in
            try await withTestClients(3, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let carol = try await clients[2].register("carol")
                try await clients[2].client.logOff()  // carol is offline

                let sentAt = Date(timeIntervalSince1970: 1_700_000_000)
                let text = try await clients[0].client.send(.text("héllo, bob 👋"), to: [bob], id: 1, sentAt: sentAt)
                #expect(text == [DeliveryResult(recipient: bob, status: .acceptedOnline)])

                let bytes: [UInt8] = [0, 1, 2, 0xFF, 0xFE]
                let binary = try await clients[0].client.send(.binary(bytes), to: [carol, bob, 424_242, bob], id: 2)
                #expect(binary.map(\.recipient) == [carol, bob, 424_242])
                #expect(binary[0].status == .acceptedOffline)
                #expect(binary[1].status == .acceptedOnline)
                guard case .failed(let error) = binary[2].status else {
                    Issue.record("an unknown recipient was accepted: \(binary[2])")
                    return
                }
                #expect(error.code == .recipientNotFound)
                #expect(binary.allSatisfy { !$0.duplicate })

                let messages = try await clients[1].waitForMessages(2)
                #expect(messages[0].id == 1)
                #expect(messages[0].sender == alice)
                #expect(messages[0].recipients == [bob])
                #expect(messages[0].body == .text("héllo, bob 👋"))
                #expect(messages[0].sentAt == sentAt)
                #expect(abs(messages[0].deliveredAt.timeIntervalSinceNow) < 60)
                #expect(messages[1].id == 2)
                #expect(messages[1].body == .binary(bytes))
                #expect(messages[1].recipients == [carol, bob, 424_242])

                // Carol gets hers when she logs on.
                let logon = try await clients[2].client.logOn(userID: carol, password: "secret")
                #expect(logon.storedMessages == 1)
                let carols = try await clients[2].waitForMessages(1)
                #expect(carols[0].body == .binary(bytes))

                // A message to nobody who exists is answered, not stored.
                let nobody = try await clients[0].client.send(.text("?"), to: [424_242])
                #expect(!nobody[0].isAccepted)
                // Invalid requests.
                try await expectError(.invalidRequest) { try await clients[0].client.send(.text("x"), to: []) }
                try await expectError(.invalidRequest) {
                    try await clients[0].client.send(.text("x"), to: [bob], id: 0)
                }
                try await expectError(.tooManyRecipients) {
                    try await clients[0].client.send(.text("x"), to: (1...257).map { UserID(UInt32($0)) })
                }
            }
        }
    }

    @Test("a message to the server fails without a server application")
    func noServerApplication() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let results = try await clients[0].client.send(.text("hello, server"), to: [.server, bob])
                #expect(results.map(\.recipient) == [.server, bob])
                guard case .failed(let error) = results[0].status else {
                    Issue.record("the server address accepted a message without an application: \(results[0])")
                    return
                }
                #expect(error.code == .serverApplicationUnavailable)
                #expect(results[1].status == .acceptedOnline)
                try await clients[1].waitForMessages(1)
            }
        }
    }

    @Test("a server application receives messages to the server and can answer")
    func serverApplication() async throws {
        let application = RecordingApplication(answers: true)
        try await withTestServer(ServerChanges { $0.application = application }) { server in
            try await withTestClient(of: server.clientConfiguration) { test in
                let alice = try await test.register("alice")
                let results = try await test.client.send(.text("ping"), to: [.server], id: 99)
                #expect(results == [DeliveryResult(recipient: .server, status: .acceptedByServer)])

                let received = try await application.received.wait(for: "the application to get the message") {
                    items, _ in items.first
                }
                #expect(received.id == 99)
                #expect(received.sender == alice)
                #expect(received.body == .text("ping"))

                let answer = try await test.waitForMessages(1)
                #expect(answer[0].sender == .server)
                #expect(answer[0].body == .text("re: ping"))
                let replies = try await application.replies.wait(for: "the answer's results") { items, _ in items.first
                }
                #expect(replies == [DeliveryResult(recipient: alice, status: .acceptedOnline)])

                // The server can send to offline and unknown users too.
                let direct = try await server.server.send(.binary([1, 2, 3]), to: [alice, 424_242, .server])
                #expect(direct.map(\.recipient) == [alice, 424_242])
                #expect(direct[0].status == .acceptedOnline)
                #expect(!direct[1].isAccepted)
                try await test.waitForMessages(2)
            }
        }
    }

    @Test(
        "messages stored while the recipient is offline arrive oldest first at logon, once",
        arguments: ParleyServer.Configuration.MessageStorage.allCases)
    func offlineDelivery(storage: ParleyServer.Configuration.MessageStorage) async throws {
        try await withTestServer(ServerChanges { $0.messageStorage = storage }) { server in
            let (bob, sentIDs) = try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob", password: "pw")
                try await clients[1].client.logOff()
                var ids: [MessageID] = []
                for index in 0..<5 {
                    let id = MessageID(UInt64(100 + index))
                    let results = try await clients[0].client.send(
                        .text("offline \(index)"), to: [bob], id: id, wantReceipt: true)
                    #expect(results.map(\.status) == [.acceptedOffline])
                    ids.append(id)
                }
                let logon = try await clients[1].client.logOn(userID: bob, password: "pw")
                #expect(logon.storedMessages == 5)
                let messages = try await clients[1].waitForMessages(5)
                #expect(messages.map(\.id) == ids)
                #expect(messages.map(\.body) == (0..<5).map { .text("offline \($0)") })

                // Taking the events acknowledged them: the sender gets its receipts.
                let receipts = try await clients[0].events.wait(for: "5 delivery receipts") { events, _ in
                    let receipts = events.compactMap { event -> DeliveryReceipt? in
                        if case .deliveryReceipt(let receipt) = event { return receipt }
                        return nil
                    }
                    return receipts.count >= 5 ? receipts : nil
                }
                #expect(Set(receipts.map(\.messageID)) == Set(ids))
                #expect(receipts.allSatisfy { $0.recipient == bob })
                return (bob, ids)
            }
            #expect(sentIDs.count == 5)

            // A brand-new client (no memory of what it saw) gets nothing more.
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let logon = try await clients[0].client.logOn(userID: bob, password: "pw")
                #expect(logon.storedMessages == 0)
                // A marker message proves the stream is live and nothing came before it.
                let carol = try await clients[1].register("carol")
                _ = try await clients[1].client.send(.text("marker"), to: [bob])
                let messages = try await clients[0].waitForMessages(1)
                #expect(messages.map(\.body) == [.text("marker")])
                #expect(messages.first?.sender == carol)
            }
        }
    }

    @Test("500 messages from one sender arrive in order through a small delivery window")
    func ordering() async throws {
        try await withTestServer(ServerChanges { $0.deliveryWindow = 8 }) { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob", password: "pw")
                let count = 500
                for index in 0..<count {
                    let results = try await clients[0].client.send(
                        .text("\(index)"), to: [bob], id: MessageID(UInt64(index + 1)))
                    #expect(results.count == 1 && results[0].isAccepted)
                    // Half-way, bob goes offline and comes back: stored and live delivery mix.
                    if index == count / 4 {
                        try await clients[1].client.logOff()
                    } else if index == count / 2 {
                        try await clients[1].client.logOn(userID: bob, password: "pw")
                    }
                }
                let messages = try await clients[1].waitForMessages(count, timeout: .seconds(30))
                #expect(messages.count == count)
                #expect(messages.map(\.body) == (0..<count).map { .text("\($0)") })
            }
        }
    }

    @Test("resending a message ID is reported as a duplicate and delivered once")
    func deduplication() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let first = try await clients[0].client.send(.text("once"), to: [bob], id: 77)
                #expect(first == [DeliveryResult(recipient: bob, status: .acceptedOnline, duplicate: false)])
                try await clients[1].waitForMessages(1)
                let again = try await clients[0].client.send(.text("once"), to: [bob], id: 77)
                #expect(again.count == 1)
                #expect(again.first?.duplicate == true)
                #expect(again.first?.isAccepted == true)

                _ = try await clients[0].client.send(.text("next"), to: [bob], id: 78)
                let messages = try await clients[1].waitForMessages(2)
                #expect(messages.map(\.id) == [77, 78])
            }
        }
    }

    @Test("a receipt arrives when a recipient takes a message sent with wantReceipt")
    func deliveryReceipts() async throws {
        try await withTestServer { server in
            try await withTestClients(3, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let carol = try await clients[2].register("carol")
                _ = try await clients[0].client.send(.text("no receipt"), to: [bob], id: 1)
                _ = try await clients[0].client.send(.text("receipt"), to: [bob, carol], id: 2, wantReceipt: true)
                try await clients[1].waitForMessages(2)
                try await clients[2].waitForMessages(1)

                let receipts = try await clients[0].events.wait(for: "2 receipts") { events, _ in
                    let receipts = events.compactMap { event -> DeliveryReceipt? in
                        if case .deliveryReceipt(let receipt) = event { return receipt }
                        return nil
                    }
                    return receipts.count >= 2 ? receipts : nil
                }
                #expect(receipts.allSatisfy { $0.messageID == 2 })
                #expect(Set(receipts.map(\.recipient)) == [bob, carol])
                #expect(receipts.allSatisfy { abs($0.acknowledgedAt.timeIntervalSinceNow) < 60 })
            }
        }
    }

    @Test("a message as large as the server accepts reaches its recipient; a larger one fails without harm")
    func largestMessage() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let sentAt = Date(timeIntervalSince1970: 1_700_000_000)
                // The SEND_MESSAGE meta the client writes, to fill the frame to exactly the maximum.
                var meta = Parley_V1_SendMessageRequest()
                meta.messageID = 1
                meta.recipients = [bob.rawValue]
                meta.kind = .binary
                meta.sentAtMs = sentAt.millisecondsSince1970
                let metaLength = Frame(type: .sendMessage, requestID: 1, message: meta).meta.readableBytes
                let largest = (1 << 20) - Frame.headerSize - metaLength
                let body = MessageBody.binary((0..<largest).map { UInt8(truncatingIfNeeded: $0) })

                let results = try await clients[0].client.send(body, to: [bob], id: 1, sentAt: sentAt)
                #expect(results.map(\.status) == [.acceptedOnline])
                let received = try await clients[1].waitForMessages(1)
                #expect(received.first?.body == body)

                let tooLarge = MessageBody.binary(Array(repeating: 1, count: largest + 1))
                try await expectError(.frameTooLarge) {
                    try await clients[0].client.send(tooLarge, to: [bob], id: 2, sentAt: sentAt)
                }
                // The sender is still (or again) logged on and can send.
                let after = try await clients[0].client.send(.text("after"), to: [bob], id: 3)
                #expect(after.map(\.status) == [.acceptedOnline])
                let messages = try await clients[1].waitForMessages(2)
                #expect(messages.map(\.id) == [1, 3])
                // Nothing made bob's client reconnect.
                #expect(
                    clients[1].events.items.filter { event in
                        if case .connectionStateChanged(.disconnected) = event { return true }
                        return false
                    }.isEmpty
                )
            }
        }
    }

    @Test("one client used by two users in turn gets each user's copy of a message sent to both")
    func sharedClientTwoUsers() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let shared = clients[1]
                let first = try await shared.register("first", password: "pw")
                try await shared.client.logOff()
                let second = try await shared.register("second", password: "pw")
                try await shared.client.logOff()

                let results = try await clients[0].client.send(.text("to both"), to: [first, second], id: 9)
                #expect(results.map(\.status) == [.acceptedOffline, .acceptedOffline])

                try await shared.client.logOn(userID: first, password: "pw")
                try await shared.waitForMessages(1)
                try await shared.client.logOff()
                let logon = try await shared.client.logOn(userID: second, password: "pw")
                #expect(logon.storedMessages == 1)
                let messages = try await shared.waitForMessages(2)
                #expect(messages.map(\.id) == [9, 9])
            }
        }
    }
}
