import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import Testing

/// docs/PROTOCOL.md section 23.4: a connection that goes silent without closing (a cut cable, a
/// host gone off the network) shows offline to contacts once the server's idle timeout passed.
@Suite(.timeLimit(.minutes(1))) struct CutCablePresenceTests {
    @Test func aContactBehindACutCableShowsOfflineWithinTheIdleTimeout() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let idleTimeout = Duration.seconds(3)
        let heartbeat = Duration.seconds(1)
        func shortTimeouts(_ configuration: inout ParleyServer.Configuration) {
            configuration.idleTimeout = idleTimeout
            configuration.heartbeatInterval = heartbeat
        }
        try await withServer(dataDirectory: directory.subdirectory("server"), configure: shortTimeouts) { _, server in
            let users = try await registerUsers(["alice", "bob"], on: server)
            // Bob reaches the server through a proxy that can stop forwarding without closing.
            let proxy = try await FreezingProxy()
            proxy.forward(to: server.port)
            var viaProxy = server
            viaProxy.port = proxy.port
            let alice = ParleyClient(configuration: server, logger: makeTestLogger("alice"))
            let bob = ParleyClient(configuration: viaProxy, logger: makeTestLogger("bob"))
            try await withThrowingTaskGroup(of: Void.self) { clients in
                clients.addTask { try await alice.run() }
                clients.addTask { try await bob.run() }
                defer {
                    alice.shutdown()
                    bob.shutdown()
                }
                _ = try await alice.logOn(userID: users[0], password: "pw-alice")
                _ = try await alice.addContact(users[1])
                var events = alice.events.makeAsyncIterator()
                func bobBecomes(_ state: PresenceState) async throws {
                    while let event = await events.next() {
                        if case .presence(let update) = event, update.presences[users[1]]?.state == state { return }
                    }
                    throw ParleyError(code: .cancelled, message: "alice's events ended before bob was \(state)")
                }
                _ = try await bob.logOn(userID: users[1], password: "pw-bob")
                try await bobBecomes(.online)

                let cut = ContinuousClock.now
                try await proxy.freeze()
                try await bobBecomes(.offline)
                let seen = ContinuousClock.now - cut
                print("timing: offline seen \(seen) after the cut (idle timeout \(idleTimeout))")
                // The server heard from bob at most one heartbeat before the cut, so the idle
                // timeout ends between (timeout - heartbeat) and (timeout) after it.
                #expect(seen >= idleTimeout - heartbeat - .milliseconds(200), "offline after \(seen)")
                #expect(seen <= idleTimeout + .milliseconds(500), "offline after \(seen)")
            }
        }
    }
}
