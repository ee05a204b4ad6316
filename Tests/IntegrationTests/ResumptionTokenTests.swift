import Foundation
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyServerStore
import ParleyTesting
import ParleyWire
import Testing

/// Resumption tokens (docs/PROTOCOL.md section 9.2.1) on real servers, sockets and SQLite.
@Suite("Resumption tokens", .timeLimit(.minutes(1)))
struct ResumptionTokenTests {
    /// Registers `name` on a fresh connection; returns its ID and the token the answer carries.
    private static func register(
        _ name: String,
        password: String = "secret",
        at address: ListeningAddress
    ) async throws -> (UserID, Parley_V1_LogonResponse) {
        let raw = try await RawConnection.connect(to: address)
        try await raw.hello()
        var request = Parley_V1_RegisterRequest()
        request.info.userName = name
        request.password = password
        let answer = try await raw.request(.register, request)
        await raw.close()
        try #require(answer.type == FrameType.register.response)
        let response: Parley_V1_LogonResponse = try answer.decodeMeta()
        return (UserID(response.user.userID), response)
    }

    /// A LOGON with `token` and no password on `raw`.
    private static func logOn(_ raw: RawConnection, _ user: UserID, token: String) async throws -> Frame {
        var request = Parley_V1_LogonRequest()
        request.userID = user.rawValue
        request.resumptionToken = token
        return try await raw.request(.logOn, request)
    }

    /// A LOGON with `token` on a fresh connection, which stays open if it succeeded.
    private static func logOn(
        _ user: UserID,
        token: String,
        at address: ListeningAddress
    ) async throws -> (RawConnection, Frame) {
        let raw = try await RawConnection.connect(to: address)
        try await raw.hello()
        return (raw, try await logOn(raw, user, token: token))
    }

    @Test("a logon issues a token; the token logs on without the password, once, and is rotated")
    func tokenLogonRotates() async throws {
        try await withTestServer { server in
            let (alice, registered) = try await Self.register("alice", at: server.address)
            let first = registered.resumptionToken
            #expect(first.count == 43)
            #expect(registered.resumptionTokenExpiresAtMs > Int64(Date().timeIntervalSince1970 * 1000))

            let (raw, answer) = try await Self.logOn(alice, token: first, at: server.address)
            #expect(answer.type == FrameType.logOn.response)
            let resumed: Parley_V1_LogonResponse = try answer.decodeMeta()
            #expect(resumed.user.userID == alice.rawValue)
            #expect(resumed.resumptionToken.count == 43)
            #expect(resumed.resumptionToken != first)
            await raw.close()

            // Used once: a replay is refused, and the refusal does not burn the new token.
            let (replay, refused) = try await Self.logOn(alice, token: first, at: server.address)
            #expect(ParleyError(errorFrame: refused).code == .invalidCredentials)
            await replay.close()
            let (again, accepted) = try await Self.logOn(alice, token: resumed.resumptionToken, at: server.address)
            #expect(accepted.type == FrameType.logOn.response)
            await again.close()
        }
    }

    @Test("a token is refused for another user, with a password, or when made up")
    func tokenRefusals() async throws {
        try await withTestServer { server in
            let (alice, registered) = try await Self.register("alice", at: server.address)
            let (bob, _) = try await Self.register("bob", at: server.address)

            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            var both = Parley_V1_LogonRequest()
            both.userID = alice.rawValue
            both.password = "secret"
            both.resumptionToken = registered.resumptionToken
            #expect(ParleyError(errorFrame: try await raw.request(.logOn, both)).code == .invalidRequest)

            let madeUp = String(repeating: "A", count: 43)
            #expect(
                ParleyError(errorFrame: try await Self.logOn(raw, alice, token: madeUp)).code == .invalidCredentials)
            // Alice's token names Alice: presented for Bob it is refused, and deleted.
            let wrongUser = try await Self.logOn(raw, bob, token: registered.resumptionToken)
            #expect(ParleyError(errorFrame: wrongUser).code == .invalidCredentials)
            let afterProbe = try await Self.logOn(raw, alice, token: registered.resumptionToken)
            #expect(ParleyError(errorFrame: afterProbe).code == .invalidCredentials)
            await raw.close()
        }
    }

    @Test("LOGOFF and CHANGE_PASSWORD revoke the user's tokens")
    func revocation() async throws {
        try await withTestServer { server in
            let (alice, registered) = try await Self.register("alice", password: "pw-a", at: server.address)
            let (raw, answer) = try await Self.logOn(alice, token: registered.resumptionToken, at: server.address)
            let current: Parley_V1_LogonResponse = try answer.decodeMeta()
            #expect(try await raw.request(.logOff, Parley_V1_Empty()).type == FrameType.logOff.response)
            let afterLogOff = try await Self.logOn(raw, alice, token: current.resumptionToken)
            #expect(ParleyError(errorFrame: afterLogOff).code == .invalidCredentials)

            // Two tokens (two password logons), then a password change: both are refused.
            var logon = Parley_V1_LogonRequest()
            logon.userID = alice.rawValue
            logon.password = "pw-a"
            let one: Parley_V1_LogonResponse = try await raw.request(.logOn, logon).decodeMeta()
            #expect(try await raw.request(.logOff, Parley_V1_Empty()).type == FrameType.logOff.response)
            // The log-off revoked `one`: log on again for a token that survives until the change.
            let two: Parley_V1_LogonResponse = try await raw.request(.logOn, logon).decodeMeta()
            var change = Parley_V1_ChangePasswordRequest()
            change.oldPassword = "pw-a"
            change.newPassword = "pw-a2"
            #expect(try await raw.request(.changePassword, change).type == FrameType.changePassword.response)
            await raw.close()
            for token in [one.resumptionToken, two.resumptionToken] {
                let (other, refused) = try await Self.logOn(alice, token: token, at: server.address)
                #expect(ParleyError(errorFrame: refused).code == .invalidCredentials)
                await other.close()
            }
        }
    }

    @Test("an expired token is refused")
    func expiry() async throws {
        // The server's clock moves only when the test moves it.
        let clock = ManualClock()
        let changes = ServerChanges {
            $0.resumptionTokenLifetime = .milliseconds(20)
            $0.clock = clock.serverClock
        }
        try await withTestServer(changes) { server in
            let (alice, registered) = try await Self.register("alice", at: server.address)
            clock.advance(by: .milliseconds(21))
            let (raw, refused) = try await Self.logOn(alice, token: registered.resumptionToken, at: server.address)
            #expect(ParleyError(errorFrame: refused).code == .invalidCredentials)
            await raw.close()
        }
    }

    @Test("too many unknown tokens from one address back that address off, not the user")
    func unknownTokensThrottleTheAddress() async throws {
        try await withTestServer { server in
            let (alice, _) = try await Self.register("alice", password: "pw-a", at: server.address)
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            var codes: [ParleyError.Code] = []
            for _ in 0..<12 {
                let token = String(repeating: "B", count: 43)
                codes.append(ParleyError(errorFrame: try await Self.logOn(raw, alice, token: token)).code)
            }
            #expect(codes.prefix(10).allSatisfy { $0 == .invalidCredentials })
            #expect(codes.last == .tooManyAttempts)
            await raw.close()
        }
    }

    @Test("a ParleyClient reconnecting after a server restart logs on again by token")
    func clientResumesAfterRestart() async throws {
        try await withRestartableServer { first, dataDirectory, restart in
            try await withTestClient(of: first.clientConfiguration) { test in
                let alice = try await test.register("alice", password: "pw-a")
                try await test.waitForEvent("the registration's logon", after: 0) { event -> Bool? in
                    event == .connectionStateChanged(.loggedOn(alice)) ? true : nil
                }
                let before = test.events.items.count
                // Same data directory, so the same certificate: the pinned client trusts it.
                let restarted = try await restart {
                    // While the server is down the password hash is replaced: a logon with the
                    // password the client holds now fails, so only the token can log it on.
                    let database = URL(fileURLWithPath: dataDirectory)
                        .appendingPathComponent("parley-server.sqlite").path
                    try ServerStore(path: database).updatePasswordHash(alice, to: "not-a-hash")
                }
                #expect(restarted)
                try await test.waitForEvent("logging on again", after: before) { event -> Bool? in
                    event == .connectionStateChanged(.loggedOn(alice)) ? true : nil
                }
                #expect(try await test.client.userInfo(alice).userName == "alice")
            }
        }
    }
}
