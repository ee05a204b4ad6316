import NIOCore
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Testing

/// Session rules seen from a raw socket, where counts and order are exact.
@Suite("Session protocol on the wire", .timeLimit(.minutes(1)))
struct SessionProtocolTests {
    /// The MESSAGE events received so far, as their message IDs.
    private func messageIDs(_ raw: RawConnection) -> [UInt64] {
        raw.frames.items.filter { $0.type == .message }.compactMap {
            try? $0.decodeMeta(as: Parley_V1_MessageEvent.self).messageID
        }
    }

    /// A round trip through the server: everything it decided to send before answering has been sent.
    private func roundTrip(_ raw: RawConnection) async throws {
        let answer = try await raw.request(.userExists, Parley_V1_UserIdRequest())
        #expect(answer.type == FrameType.userExists.response)
    }

    private func acknowledge(_ ids: ClosedRange<UInt64>, from sender: UserID, on raw: RawConnection) async throws {
        var ack = Parley_V1_AckMessagesRequest()
        ack.messages = ids.map { id in
            var ref = Parley_V1_MessageRef()
            ref.sender = sender.rawValue
            ref.messageID = id
            return ref
        }
        let answer = try await raw.request(.ackMessages, ack)
        #expect(answer.type == FrameType.ackMessages.response)
    }

    private func waitForMessages(_ count: Int, on raw: RawConnection) async throws {
        _ = try await raw.frames.wait(for: "\(count) MESSAGE events") { frames, _ in
            frames.count(where: { $0.type == .message }) >= count ? true : nil
        }
    }

    @Test("at most a window of unacknowledged messages is pushed; acknowledgements free it")
    func deliveryWindow() async throws {
        try await withTestServer(ServerChanges { $0.deliveryWindow = 8 }) { server in
            try await withTestClient(of: server.clientConfiguration) { alice in
                let sender = try await alice.register("alice")
                let raw = try await RawConnection.connect(to: server.address)
                try await raw.hello()
                let bob = try await raw.register("bob")
                for id in UInt64(1)...20 {
                    let results = try await alice.client.send(.text("\(id)"), to: [bob], id: MessageID(id))
                    #expect(results.map(\.status) == [.acceptedOnline])
                }
                try await waitForMessages(8, on: raw)
                try await roundTrip(raw)
                #expect(messageIDs(raw) == Array(1...8))

                // 5 still in flight: more than half the window, so nothing new yet.
                try await acknowledge(1...3, from: sender, on: raw)
                try await roundTrip(raw)
                #expect(messageIDs(raw) == Array(1...8))

                // Half the window free: the next 4 come from the store.
                try await acknowledge(4...4, from: sender, on: raw)
                try await waitForMessages(12, on: raw)
                try await roundTrip(raw)
                #expect(messageIDs(raw) == Array(1...12))

                try await acknowledge(5...12, from: sender, on: raw)
                try await waitForMessages(20, on: raw)
                #expect(messageIDs(raw) == Array(1...20))

                // 13...20 fill the window: 21 waits in the store until they are acknowledged.
                _ = try await alice.client.send(.text("21"), to: [bob], id: 21)
                try await roundTrip(raw)
                #expect(messageIDs(raw) == Array(1...20))
                try await acknowledge(13...20, from: sender, on: raw)
                try await waitForMessages(21, on: raw)

                // Caught up: new messages are pushed live again.
                _ = try await alice.client.send(.text("22"), to: [bob], id: 22)
                try await waitForMessages(22, on: raw)
                #expect(messageIDs(raw) == Array(1...22))
                await raw.close()
            }
        }
    }

    @Test("requests pipelined behind a LOGON are handled after it, as the logged-on user")
    func pipelinedAfterLogon() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            let me = try await raw.register("pipeliner", password: "pw")
            _ = try await raw.request(.logOff, Parley_V1_Empty())

            var send = Parley_V1_SendMessageRequest()
            send.messageID = 1
            send.recipients = [me.rawValue]
            var info = Parley_V1_UserIdRequest()
            info.userID = me.rawValue

            // A wrong password first: what follows it is still a guest's request.
            var wrong = Parley_V1_LogonRequest()
            wrong.userID = me.rawValue
            wrong.password = "wrong"
            let frames = [
                Frame(type: .logOn, requestID: 10, message: wrong),
                Frame(type: .getUserInfo, requestID: 11, message: info),
            ]
            var right = wrong
            right.password = "pw"
            let moreFrames = [
                Frame(type: .logOn, requestID: 12, message: right),
                Frame(type: .sendMessage, requestID: 13, message: send, payload: ByteBuffer(string: "hi")),
                Frame(type: .getUserInfo, requestID: 14, message: info),
            ]
            // All five frames in one write: nothing waits for an answer.
            var bytes = ByteBuffer()
            for frame in frames + moreFrames {
                var encoded = frame.encoded()
                bytes.writeBuffer(&encoded)
            }
            try await raw.send(bytes: Array(bytes.readableBytesView))

            // Answers may come in any order (section 3): sort them by request ID.
            let answers = try await raw.frames.wait(for: "five answers") { frames, _ in
                let answers = frames.filter { (10...14).contains($0.requestID) }
                return answers.count == 5 ? answers.sorted { $0.requestID < $1.requestID } : nil
            }
            #expect(answers.map(\.requestID) == [10, 11, 12, 13, 14])
            #expect(ParleyError(errorFrame: answers[0]).code == .invalidCredentials)
            #expect(ParleyError(errorFrame: answers[1]).code == .notLoggedOn)
            #expect(answers[2].type == FrameType.logOn.response)
            #expect(answers[3].type == FrameType.sendMessage.response)
            #expect(answers[4].type == FrameType.getUserInfo.response)
            await raw.close()
        }
    }

    @Test("many concurrent requests on one client each get their own answer")
    func concurrentRequests() async throws {
        try await withTestServer { server in
            try await withTestClient(of: server.clientConfiguration) { test in
                var ids: [UserID] = []
                for index in 0..<20 {
                    ids.append(try await test.register("user-\(index)"))
                    try await test.client.logOff()
                }
                let client = test.client
                let known = ids
                let found = try await withThrowingTaskGroup(of: (Int, [UserID]).self) { group in
                    for round in 0..<5 {
                        for index in 0..<20 {
                            group.addTask {
                                (index, try await client.findUserIDs(named: "USER-\(index)"))
                            }
                            if round == 0 {
                                let id = known[index]
                                group.addTask { (index, try await client.userExists(id) ? [id] : []) }
                            }
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(found.count == 120)
                for (index, result) in found {
                    #expect(result == [ids[index]])
                }
            }
        }
    }
}
