import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Testing

@Suite("Connection limits and keep-alive", .timeLimit(.minutes(1)))
struct LimitsTests {
    @Test("connections beyond the maximum are refused with TOO_MANY_CONNECTIONS")
    func maximumConnections() async throws {
        try await withTestServer(ServerChanges { $0.maximumConnections = 3 }) { server in
            var connections: [RawConnection] = []
            for _ in 0..<3 {
                let raw = try await RawConnection.connect(to: server.address)
                try await raw.hello()
                connections.append(raw)
            }
            #expect(server.server.connectionCount == 3)

            let refused = try await RawConnection.connect(to: server.address)
            let frames = try await refused.waitUntilClosed()
            #expect(frames.count == 1)
            #expect(frames.first?.isFatalError == true)
            #expect(refused.connectionErrors.map(\.code) == [.tooManyConnections])

            // The three are unaffected.
            for raw in connections {
                var exists = Parley_V1_UserIdRequest()
                exists.userID = 1000
                #expect(try await raw.request(.userExists, exists).type == FrameType.userExists.response)
                await raw.close()
            }
        }
    }

    @Test("a silent peer is closed with IDLE_TIMEOUT; a real client answers PINGs and stays")
    func idleTimeout() async throws {
        try await withTestServer(
            ServerChanges {
                // Wide margins: the real client must not be timed out by a loaded machine.
                // (The silence counts from the TLS handshake on, so it must cover HELLO and REGISTER.)
                // CI's full run once took more than 3 s for the raw HELLO and REGISTER.
                $0.heartbeatInterval = .milliseconds(300)
                $0.idleTimeout = .milliseconds(8000)
            }
        ) { server in
            try await withTestClient(of: server.clientConfiguration) { test in
                let alice = try await test.register("alice")
                let (raw, sleepy) = try await connectSilentPeer(to: server)

                let frames = try await raw.waitUntilClosed(timeout: .seconds(30))
                #expect(frames.contains { $0.type == .ping })
                #expect(frames.last?.isFatalError == true)
                #expect(raw.connectionErrors.map(\.code) == [.idleTimeout])

                // The client has been connected at least as long and is still there.
                #expect(
                    !test.events.items.contains { event in
                        if case .connectionStateChanged(.disconnected) = event { return true }
                        return false
                    }
                )
                #expect(try await test.client.userInfo(alice).isOnline)
                #expect(try await !test.client.isOnline(sleepy))

                // The timed-out session is over: the user can log on again.
                try await test.client.logOff()
                try await test.client.logOn(userID: sleepy, password: "secret")
            }
        }
    }

    /// Connects a raw peer that answers nothing, says HELLO and registers "sleepy".
    ///
    /// The server counts silence from the TLS handshake on, and the full suite starts every test at
    /// once on two cores: CI once took so long between the raw HELLO and REGISTER that the server
    /// closed the connection first (the REGISTER then failed with "I/O on closed channel"). That
    /// early close must be the idle timeout itself; then the peer tries again, at most three times.
    private func connectSilentPeer(to server: TestServer) async throws -> (RawConnection, UserID) {
        var attempt = 1
        while true {
            let raw = try await RawConnection.connect(to: server.address)
            do {
                let ok = try await raw.hello()
                #expect(ok.heartbeatIntervalMs == 300)
                #expect(ok.idleTimeoutMs == 8000)
                return (raw, try await raw.register(attempt == 1 ? "sleepy" : "sleepy\(attempt)"))
            } catch  where attempt < 3 {
                _ = try await raw.waitUntilClosed()
                #expect(raw.connectionErrors.map(\.code) == [.idleTimeout], "closed early: \(error)")
                print("the silent peer was timed out before it registered (attempt \(attempt)): \(error)")
            }
            attempt += 1
        }
    }

    @Test(
        "a peer that stops reading is disconnected (slow consumer, or idle) even though its socket is full",
        arguments: ["slow consumer", "idle"]
    )
    func stuckPeerIsDisconnected(reason: String) async throws {
        try await withTestServer(
            ServerChanges {
                $0.outboundQueueLimit = 64 * 1024
                if reason == "idle" {
                    // Long enough for the TLS handshake, HELLO and REGISTER on a loaded machine: the
                    // silence that counts starts once the peer stops reading.
                    // (1.5 s, then 4 s, were once too short in a full CI run, with every suite at once.)
                    $0.heartbeatInterval = .milliseconds(300)
                    $0.idleTimeout = .seconds(10)
                } else {
                    $0.slowConsumerTimeout = .milliseconds(200)
                }
            }
        ) { server in
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            let user = try await raw.register("sleepy")
            // From now on the peer reads nothing: the kernel buffers fill, then the server's queue.
            try await raw.channel.setOption(.autoRead, value: false).get()

            let body = MessageBody.binary(Array(repeating: 0x5A, count: 64 * 1024))
            for _ in 0..<300 where server.server.connectionCount > 0 {
                _ = try await server.server.send(body, to: [user])
            }
            try await eventually("the server to drop the connection", timeout: .seconds(30)) {
                server.server.connectionCount == 0
            }
            await raw.close()
        }
    }
}
