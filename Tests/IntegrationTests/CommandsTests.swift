import Foundation
import NIOCore
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Testing

@Suite("Custom commands", .timeLimit(.minutes(1)))
struct CommandsTests {
    @Test("a client's command runs the server application's handler, which sees the sender and the payload")
    func clientToServerApplication() async throws {
        try await withTestServer { server in
            let seen = Mailbox<Command>()
            try server.server.commands.register("reverse") { command in
                seen.append(command)
                return command.payload.reversed()
            }
            #expect(server.server.commands.names == ["reverse"])
            try await withTestClient(of: server.clientConfiguration) { alice in
                let id = try await alice.register("alice")
                let reply = try await alice.client.sendCommand("reverse", payload: Array("abc".utf8))
                #expect(reply == Array("cba".utf8))
                let command = try #require(seen.items.first)
                #expect(command.sender == id)
                #expect(command.name == "reverse")
                #expect(command.expectsReply)

                try await expectError(.noHandler) { try await alice.client.sendCommand("missing") }
                server.server.commands.remove("reverse")
                try await expectError(.noHandler) { try await alice.client.sendCommand("reverse") }
            }
        }
    }

    @Test("the server application sends a command to a client's handler and gets the reply")
    func serverApplicationToClient() async throws {
        try await withTestServer { server in
            try await withTestClient(of: server.clientConfiguration) { alice in
                try alice.client.handleCommands(named: "ping") { command in
                    Array("pong from \(command.sender):".utf8) + command.payload
                }
                let id = try await alice.register("alice")
                let reply = try await server.server.sendCommand("ping", payload: Array("x".utf8), to: id)
                #expect(String(decoding: reply, as: UTF8.self) == "pong from 0:x")
                // The command is shown in the event sequence too.
                let shown = try await alice.waitForEvent("the command event") { event -> Command? in
                    if case .command(let command) = event { return command }
                    return nil
                }
                #expect(shown == Command(name: "ping", payload: Array("x".utf8), sender: .server))
                try await expectError(.noHandler) { try await server.server.sendCommand("nothing-here", to: id) }
                try await expectError(.recipientOffline) { try await server.server.sendCommand("ping", to: 424_242) }
            }
        }
    }

    @Test("a command from one client to another goes through the server and back; failures keep their code and text")
    func clientToClient() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let (alice, bob) = (clients[0], clients[1])
                try bob.client.handleCommands(named: "echo") { $0.payload }
                try bob.client.handleCommands(named: "print") { _ in
                    throw CommandFailure(code: 42, text: "out of paper")
                }
                try bob.client.handleCommands(named: "crash") { _ in
                    throw ParleyError(code: .internalError, message: "boom")
                }
                let aliceID = try await alice.register("alice")
                let bobID = try await bob.register("bob")

                let payload: [UInt8] = [0, 1, 2, 255]
                #expect(try await alice.client.sendCommand("echo", payload: payload, to: bobID) == payload)
                let received = try await bob.waitForEvent("bob's command") { event -> Command? in
                    if case .command(let command) = event { return command }
                    return nil
                }
                #expect(received.sender == aliceID)

                let failed = try await expectError(.commandFailed) {
                    try await alice.client.sendCommand("print", to: bobID)
                }
                #expect(failed.applicationCode == 42)
                #expect(failed.message == "out of paper")
                let crashed = try await expectError(.commandFailed) {
                    try await alice.client.sendCommand("crash", to: bobID)
                }
                #expect(crashed.applicationCode == 0)
                #expect(crashed.message.contains("boom"))
                try await expectError(.noHandler) { try await alice.client.sendCommand("unknown", to: bobID) }

                // bob logs off: commands to him fail at once instead of waiting for the timeout.
                try await bob.client.logOff()
                try await expectError(.recipientOffline) { try await alice.client.sendCommand("echo", to: bobID) }
                try await expectError(.recipientOffline) { try await alice.client.fireCommand("echo", to: bobID) }
            }
        }
    }

    @Test("fire-and-forget commands reach the recipient's handler and the server's; nobody waits for a reply")
    func fireAndForget() async throws {
        try await withTestServer { server in
            let atServer = Mailbox<Command>()
            try server.server.commands.register("log") { command in
                atServer.append(command)
                return []
            }
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let (alice, bob) = (clients[0], clients[1])
                let atBob = Mailbox<Command>()
                try bob.client.handleCommands(named: "note") { command in
                    atBob.append(command)
                    return Array("ignored".utf8)
                }
                _ = try await alice.register("alice")
                let bobID = try await bob.register("bob")

                #expect(try await alice.client.fireCommand("note", payload: [7], to: bobID) == .delivered)
                let note = try await atBob.wait(for: "the note at bob") { items, _ in items.first }
                #expect(note.payload == [7])
                #expect(!note.expectsReply)
                #expect(try await alice.client.fireCommand("log", payload: [9]) == .delivered)
                let logged = try await atServer.wait(for: "the log at the server") { items, _ in items.first }
                #expect(logged.payload == [9])
                #expect(!logged.expectsReply)
                // Without a handler a fire-and-forget command still shows in the recipient's events.
                _ = try await alice.client.fireCommand("no-handler", to: bobID)
                _ = try await bob.waitForEvent("the unhandled command") { event -> Bool? in
                    if case .command(let command) = event, command.name == "no-handler" { return true }
                    return nil
                }
                // The server application fires at bob too.
                try server.server.fireCommand("note", payload: [8], to: bobID)
                _ = try await atBob.wait(for: "the server's note") { items, _ in
                    items.first { $0.sender == .server && $0.payload == [8] }
                }
            }
        }
    }

    @Test("the server application fires a command at several users and at everyone online")
    func serverCommandToSeveralAndAll() async throws {
        try await withTestServer { server in
            try await withTestClients(3, of: server.clientConfiguration) { clients in
                let notes = Mailbox<(Int, Command)>()
                var ids: [UserID] = []
                for (index, client) in clients.enumerated() {
                    try client.client.handleCommands(named: "notice") { command in
                        notes.append((index, command))
                        return []
                    }
                    ids.append(try await client.register("user\(index)"))
                }
                // Two of them, plus one who is not online: the offline one is left out.
                let reached = try server.server.fireCommand("notice", payload: [1], to: [ids[0], ids[2], 424_242])
                #expect(reached == [ids[0], ids[2]])
                let first = try await notes.wait(for: "two notices") { items, _ in items.count >= 2 ? items : nil }
                #expect(Set(first.map(\.0)) == [0, 2])
                #expect(first.allSatisfy { $0.1.sender == .server && $0.1.payload == [1] })

                let everyone = try server.server.broadcastCommand("notice", payload: [2])
                #expect(everyone == ids.sorted())
                let all = try await notes.wait(for: "three more notices") { items, _ in
                    items.filter { $0.1.payload == [2] }.count >= 3 ? items.filter { $0.1.payload == [2] } : nil
                }
                #expect(Set(all.map(\.0)) == [0, 1, 2])
                #expect(throws: ParleyError.self) { try server.server.broadcastCommand("bad\u{7}name") }
            }
        }
    }

    @Test("200 concurrent commands from one client to another each get their own reply")
    func correlation() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let (alice, bob) = (clients[0], clients[1])
                try bob.client.handleCommands(named: "double") { command in command.payload + command.payload }
                _ = try await alice.register("alice")
                let bobID = try await bob.register("bob")
                let started = ContinuousClock.now
                let replies = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
                    for index in 0..<200 {
                        group.addTask {
                            let payload = Array("\(index)".utf8)
                            return (index, try await alice.client.sendCommand("double", payload: payload, to: bobID))
                        }
                    }
                    var replies: [Int: [UInt8]] = [:]
                    for try await (index, reply) in group { replies[index] = reply }
                    return replies
                }
                let took = ContinuousClock.now - started
                print("timing: 200 concurrent client->client commands through the server: \(took)")
                #expect(replies.count == 200)
                for (index, reply) in replies {
                    #expect(reply == Array("\(index)\(index)".utf8))
                }
            }
        }
    }

    @Test("with store_if_offline a fire-and-forget command waits in the store for the recipient's next logon, once")
    func storeAndForward() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let (alice, bob) = (clients[0], clients[1])
                let atBob = Mailbox<Command>()
                try bob.client.handleCommands(named: "wake") { command in
                    atBob.append(command)
                    return []
                }
                let aliceID = try await alice.register("alice")
                let bobID = try await bob.register("bob", password: "pw")
                try await bob.client.logOff()

                #expect(
                    try await alice.client.fireCommand("wake", payload: [1], to: bobID, storeIfOffline: true) == .stored
                )
                #expect(
                    try await alice.client.fireCommand("wake", payload: [2], to: bobID, storeIfOffline: true) == .stored
                )
                try await expectError(.userNotFound) {
                    try await alice.client.fireCommand("wake", to: 424_242, storeIfOffline: true)
                }
                try await expectError(.recipientOffline) { try await alice.client.fireCommand("wake", to: bobID) }

                _ = try await bob.client.logOn(userID: bobID, password: "pw")
                let woken = try await atBob.wait(for: "both stored commands") { items, _ in
                    items.count >= 2 ? items : nil
                }
                #expect(woken.map(\.payload) == [[1], [2]])
                #expect(woken.allSatisfy { $0.sender == aliceID && !$0.expectsReply })

                // Taken out: the next logon gets nothing more; a new one arrives live.
                try await bob.client.logOff()
                _ = try await bob.client.logOn(userID: bobID, password: "pw")
                #expect(
                    try await alice.client.fireCommand("wake", payload: [3], to: bobID, storeIfOffline: true)
                        == .delivered)
                let third = try await atBob.wait(for: "the live command") { items, _ in items.count >= 3 ? items : nil }
                #expect(third.map(\.payload) == [[1], [2], [3]])
            }
        }
    }

    @Test("the caller's timeout ends the wait with COMMAND_TIMED_OUT; the reply that comes later is dropped")
    func timeoutAndLateReply() async throws {
        try await withTestServer { server in
            try await withTestClient(of: server.clientConfiguration) { alice in
                _ = try await alice.register("alice")
                let bob = try await RawConnection.connect(to: server.address)
                try await Self.helloWithCommands(bob)
                let bobID = try await bob.register("bob")

                let started = ContinuousClock.now
                try await expectError(.commandTimedOut) {
                    try await alice.client.sendCommand("slow", payload: [1], to: bobID, timeout: .milliseconds(300))
                }
                #expect(ContinuousClock.now - started < .seconds(5))
                let event = try await bob.frames.wait(for: "the slow command") { frames, _ in
                    frames.first { $0.type == .command }
                }
                let command = try event.decodeMeta(as: Parley_V1_CommandEvent.self)
                #expect(command.name == "slow")
                #expect(command.timeoutMs == 300)
                #expect(Array(event.payload.readableBytesView) == [1])

                // bob replies after the timeout: the server drops the reply and says so.
                let late = try await bob.request(
                    .commandReply,
                    Parley_V1_CommandReply(commandID: command.commandID, .success([2])),
                    payload: ByteBuffer(bytes: [2])
                )
                #expect(late.type == .error)
                #expect(ParleyError(errorFrame: late).code == .commandNotPending)
                // A reply to an ID never given out, and one with an unknown error code.
                var bogus = Parley_V1_CommandReply(commandID: 999_999, .success([]))
                #expect(ParleyError(errorFrame: try await bob.request(.commandReply, bogus)).code == .commandNotPending)
                bogus.errorCode = 7
                #expect(ParleyError(errorFrame: try await bob.request(.commandReply, bogus)).code == .invalidRequest)

                // Both connections still work: a command in time gets its reply.
                async let reply = alice.client.sendCommand("quick", to: bobID, timeout: .seconds(10))
                let quick = try await bob.frames.wait(for: "the quick command") { frames, _ in
                    frames.first {
                        $0.type == .command && (try? $0.decodeMeta(as: Parley_V1_CommandEvent.self).name) == "quick"
                    }
                }
                let quickID = try quick.decodeMeta(as: Parley_V1_CommandEvent.self).commandID
                let answer = try await bob.request(
                    .commandReply, Parley_V1_CommandReply(commandID: quickID, .success([3])),
                    payload: ByteBuffer(bytes: [3]))
                #expect(answer.type == FrameType.commandReply.response)
                #expect(try await reply == [3])
                await bob.close()
            }
        }
    }

    @Test("bad names and flags are refused with INVALID_REQUEST, from the server as from the client")
    func badNames() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await Self.helloWithCommands(raw)
            let me = try await raw.register("mallory")
            let oversized = String(repeating: "n", count: Command.maximumNameBytes + 1)
            var storeWithReply = Parley_V1_CommandRequest(
                name: "x", recipient: me, timeout: .seconds(1), fireAndForget: false)
            storeWithReply.storeIfOffline = true
            for request in [
                Parley_V1_CommandRequest(name: "", recipient: .server, timeout: .seconds(1), fireAndForget: false),
                Parley_V1_CommandRequest(name: oversized, recipient: me, timeout: .seconds(1), fireAndForget: false),
                Parley_V1_CommandRequest(name: "a\u{7}b", recipient: me, timeout: .seconds(1), fireAndForget: true),
                storeWithReply,
            ] {
                let answer = try await raw.request(.sendCommand, request)
                #expect(answer.type == .error)
                #expect(ParleyError(errorFrame: answer).code == .invalidRequest)
            }
            // A name of exactly the maximum is fine (no handler for it at the server).
            let longest = String(repeating: "n", count: Command.maximumNameBytes)
            let answer = try await raw.request(
                .sendCommand,
                Parley_V1_CommandRequest(name: longest, recipient: .server, timeout: .seconds(1), fireAndForget: false))
            #expect(ParleyError(errorFrame: answer).code == .noHandler)
            await raw.close()

            try await withTestClient(of: server.clientConfiguration) { alice in
                _ = try await alice.register("alice")
                try await expectError(.invalidRequest) { try await alice.client.sendCommand(oversized) }
                #expect(throws: ParleyError.self) { try alice.client.handleCommands(named: "") { _ in [] } }
            }
        }
    }

    @Test("a session that did not negotiate the commands capability gets no COMMAND events: NO_HANDLER")
    func withoutCapability() async throws {
        try await withTestServer { server in
            let raw = try await RawConnection.connect(to: server.address)
            let ok = try await raw.hello()
            #expect(ok.capabilities.isEmpty)
            let bobID = try await raw.register("bob")
            try await withTestClient(of: server.clientConfiguration) { alice in
                _ = try await alice.register("alice")
                try await expectError(.noHandler) { try await alice.client.sendCommand("echo", to: bobID) }
            }
            #expect(!raw.frames.items.contains { $0.type == .command })
            await raw.close()
        }
    }

    /// HELLO with the `commands` capability.
    private static func helloWithCommands(_ raw: RawConnection) async throws {
        var hello = Parley_V1_Hello()
        hello.magic = WireProtocol.magic
        hello.minVersion = WireProtocol.version
        hello.maxVersion = WireProtocol.version
        hello.capabilities = [WireProtocol.commandsCapability]
        let answer = try await raw.request(.hello, hello)
        let ok = try answer.decodeMeta(as: Parley_V1_HelloOk.self)
        #expect(ok.capabilities == [WireProtocol.commandsCapability])
    }
}
