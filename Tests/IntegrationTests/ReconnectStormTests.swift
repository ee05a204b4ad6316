import Foundation
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Testing

/// A mass reconnect in small (issue 8 item 5; the 10,000-client figure is scripts/bench-reconnect.sh's):
/// resumption tokens issued by one server log on at a restarted one, all at once, and the
/// throttle lets the storm through while a reused token is still refused and counted.
@Suite("Mass reconnect", .timeLimit(.minutes(3)))
struct ReconnectStormTests {
    private static let clients = 300

    /// A user and the token its latest logon answer carried.
    private struct Credential: Sendable {
        var user: UserID
        var token: String
    }

    /// A LOGON with `token` and no password on a fresh connection; returns the connection
    /// (open) and the answer.
    private static func logOn(
        _ credential: Credential,
        at address: ListeningAddress
    ) async throws -> (RawConnection, Frame) {
        let raw = try await RawConnection.connect(to: address)
        try await raw.hello()
        return (raw, try await logOn(raw, credential))
    }

    private static func logOn(_ raw: RawConnection, _ credential: Credential) async throws -> Frame {
        var request = Parley_V1_LogonRequest()
        request.userID = credential.user.rawValue
        request.resumptionToken = credential.token
        return try await raw.request(.logOn, request)
    }

    /// Registers `count` users, 50 at a time, each on its own connection (a LOGOFF would revoke
    /// the token); returns them with the tokens their registrations issued.
    private static func register(_ count: Int, at address: ListeningAddress) async throws -> [Credential] {
        var credentials: [Credential] = []
        for batch in stride(from: 0, to: count, by: 50) {
            try await withThrowingTaskGroup(of: Credential.self) { group in
                for index in batch..<min(batch + 50, count) {
                    group.addTask {
                        let raw = try await RawConnection.connect(to: address)
                        try await raw.hello()
                        var request = Parley_V1_RegisterRequest()
                        request.info.userName = "storm-\(index)"
                        request.password = "secret-\(index)"
                        let answer = try await raw.request(.register, request)
                        await raw.close()
                        let response: Parley_V1_LogonResponse = try answer.decodeMeta()
                        return Credential(user: UserID(response.user.userID), token: response.resumptionToken)
                    }
                }
                for try await credential in group { credentials.append(credential) }
            }
        }
        return credentials
    }

    @Test(
        "300 token logons at once after a restart all succeed; a reused token is refused and counts against the address"
    )
    func stormAfterRestart() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let issued = try await withTestServer(dataDirectory: directory) { server in
            try await Self.register(Self.clients, at: server.address)
        }
        #expect(Set(issued.map(\.token)).count == Self.clients)
        #expect(issued.allSatisfy { $0.token.count == 43 })

        // A new server on the same data directory: the tokens are in its database.
        try await withTestServer(dataDirectory: directory) { server in
            let answers = try await withThrowingTaskGroup(of: (Credential, RawConnection, Frame).self) { group in
                for credential in issued {
                    group.addTask {
                        let (raw, answer) = try await Self.logOn(credential, at: server.address)
                        return (credential, raw, answer)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            var refusals: [ParleyError.Code: Int] = [:]
            var rotated = 0
            for (credential, _, answer) in answers {
                guard answer.type == FrameType.logOn.response else {
                    refusals[ParleyError(errorFrame: answer).code, default: 0] += 1
                    continue
                }
                let response: Parley_V1_LogonResponse = try answer.decodeMeta()
                #expect(response.user.userID == credential.user.rawValue)
                if response.resumptionToken.count == 43, response.resumptionToken != credential.token { rotated += 1 }
            }
            #expect(refusals.isEmpty, "refused token logons by code: \(refusals)")
            #expect(answers.count == Self.clients)
            #expect(rotated == Self.clients)
            for (_, raw, _) in answers { await raw.close() }

            // Each token was used up by the storm: presented again it is refused, and the
            // refusals count against the address (10 free, the 11th starts a back-off), so the
            // 12th is not even checked.
            let raw = try await RawConnection.connect(to: server.address)
            try await raw.hello()
            var codes: [ParleyError.Code] = []
            for credential in issued.prefix(12) {
                codes.append(ParleyError(errorFrame: try await Self.logOn(raw, credential)).code)
            }
            #expect(codes.prefix(11).allSatisfy { $0 == .invalidCredentials }, "\(codes)")
            #expect(codes.last == .tooManyAttempts)
            await raw.close()
        }
    }
}
