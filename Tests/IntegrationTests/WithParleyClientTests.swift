import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import Testing

@Suite("withParleyClient", .timeLimit(.minutes(1)))
struct WithParleyClientTests {
    @MainActor
    final class Notes {
        var lines: [String] = []
    }

    @Test("the body runs in the caller's isolation and may use its state")
    @MainActor
    func callerIsolation() async throws {
        let notes = Notes()
        try await withTestServer { server in
            let user = try await withParleyClient(configuration: server.clientConfiguration) { client in
                let me = try await client.register(UserInfo(userName: "main-actor"), password: "pw")
                notes.lines.append("registered \(me.userID)")
                return me.userID
            }
            #expect(notes.lines == ["registered \(user)"])
        }
    }

    @Test("a server that cannot be reached fails with the connection error")
    func unreachableServer() async throws {
        // Every connection is closed before the handshake.
        let scripted = try await ScriptedServer.start(hangsUp: true) { _, _ in [] }
        let port = scripted.address.port

        var configuration = ParleyClient.Configuration(host: "127.0.0.1", port: port)
        configuration.security = .insecurePlaintext
        configuration.retry.connectAttempts = 2
        configuration.retry.initialDelay = .milliseconds(10)
        let start = ContinuousClock.now
        let error = await #expect(throws: ParleyError.self) {
            try await withParleyClient(configuration: configuration) { client in
                try await client.userExists(1000)
            }
        }
        #expect(error?.code == .notConnected)
        // Two quick attempts (about 20 ms), not the default retry policy's minutes. 5 s was once
        // too tight in a full CI run with every suite at once, 10 s with a profiler beside it.
        #expect(ContinuousClock.now - start < .seconds(30))
        await scripted.stop()
    }
}
