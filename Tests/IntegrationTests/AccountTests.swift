import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import ParleyWire
import Synchronization
import Testing

@Suite("Accounts and sessions", .timeLimit(.minutes(1)))
struct AccountTests {
    @Test("the handshake works and registration assigns IDs from the configured minimum")
    func registerAssignsIDs() async throws {
        try await withTestServer(ServerChanges { $0.minimumUserID = 2000 }) { server in
            try await withTestClient(of: server.clientConfiguration) { test in
                let client = test.client
                let first = try await client.register(
                    UserInfo(userName: "  alice  ", firstName: "Alice", organization: "Acme"),
                    password: "pw-alice"
                )
                #expect(first.userID == 2000)
                #expect(first.userName == "alice")
                #expect(first.firstName == "Alice")
                #expect(first.isOnline)
                #expect(first.registeredAt != nil)
                try await client.logOff()

                #expect(try await test.register("bob") == 2001)
                try await client.logOff()

                // A free ID on request, then assignment continues above the highest.
                #expect(try await test.register("carol", requestedUserID: 5000) == 5000)
                try await client.logOff()
                #expect(try await test.register("dave") == 5001)
                try await client.logOff()

                try await expectError(.userAlreadyExists) { try await test.register("mallory", requestedUserID: 5000) }
                try await expectError(.invalidUserID) { try await test.register("low", requestedUserID: 1999) }
                try await expectError(.invalidUserID) { try await test.register("zero", requestedUserID: .server) }
                try await expectError(.invalidRequest) { try await test.register("   ") }
                try await expectError(.invalidRequest) { try await test.register("nopassword", password: "") }

                // The failures left the connection a usable guest.
                #expect(try await client.userExists(2000))
                #expect(try await !client.userExists(2002))
            }
        }
    }

    @Test("once the highest user ID is taken, assignment fails with USER_IDS_EXHAUSTED")
    func userIDsExhausted() async throws {
        try await withTestServer { server in
            try await withTestClient(of: server.clientConfiguration) { test in
                let highest = UserID(UInt32.max)
                #expect(try await test.register("last", requestedUserID: highest) == highest)
                try await test.client.logOff()
                try await expectError(.userIDsExhausted) { try await test.register("one more") }
                // Free IDs below can still be requested.
                #expect(try await test.register("requested", requestedUserID: 1000) == 1000)
            }
        }
    }

    @Test("registering logs the connection on")
    func registrationLogsOn() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice")
                #expect(clients[0].client.loggedOnUser == alice)
                try await clients[0].waitForEvent("logged on") { event in
                    event == .connectionStateChanged(.loggedOn(alice)) ? true : nil
                }
                // Logged-on requests work at once.
                #expect(try await clients[0].client.userInfo(alice).userName == "alice")
                try await expectError(.alreadyLoggedOn) { try await clients[0].register("again") }

                let bob = try await clients[1].register("bob")
                #expect(try await clients[1].client.isOnline(alice))
                try await clients[0].client.logOff()
                #expect(try await !clients[1].client.isOnline(alice))
                #expect(try await clients[1].client.isOnline(bob))
            }
        }
    }

    @Test("of ten clients racing for the same requested ID exactly one wins")
    func registrationRace() async throws {
        try await withTestServer { server in
            try await withTestClients(10, of: server.clientConfiguration) { clients in
                let outcomes = try await withThrowingTaskGroup(of: Result<UserID, ParleyError>.self) { group in
                    for (index, test) in clients.enumerated() {
                        group.addTask {
                            do {
                                return .success(try await test.register("racer-\(index)", requestedUserID: 7777))
                            } catch let error as ParleyError {
                                return .failure(error)
                            }
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let winners = outcomes.compactMap { try? $0.get() }
                #expect(winners == [7777])
                let losers = outcomes.compactMap { outcome -> ParleyError.Code? in
                    if case .failure(let error) = outcome { return error.code }
                    return nil
                }
                #expect(losers == Array(repeating: .userAlreadyExists, count: 9))
                #expect(clients.filter { $0.client.loggedOnUser == 7777 }.count == 1)
            }
        }
    }

    @Test("a guest may register, log on and search, but nothing else")
    func guestRestrictions() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("Alice")
                let guest = clients[1].client
                #expect(try await guest.userExists(alice))
                #expect(try await guest.findUserIDs(named: "alice") == [alice])
                #expect(try await guest.findUsers(UserQuery()).users.map(\.userID) == [alice])

                try await expectError(.notLoggedOn) { try await guest.userInfo(alice) }
                try await expectError(.notLoggedOn) { try await guest.isOnline(alice) }
                try await expectError(.notLoggedOn) { try await guest.send(.text("hi"), to: [alice]) }
                try await expectError(.notLoggedOn) { try await guest.updateUserInfo(UserInfo(userName: "x")) }
                try await expectError(.notLoggedOn) { try await guest.changePassword(from: "a", to: "b") }
                try await expectError(.notLoggedOn) { try await guest.logOff() }

                let bob = try await clients[1].register("bob")
                #expect(try await guest.isOnline(alice))
                #expect(guest.loggedOnUser == bob)
            }
        }
    }

    @Test("a wrong password fails and leaves the connection a usable guest")
    func wrongPassword() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice", password: "right")
                try await clients[0].client.logOff()

                let other = clients[1].client
                try await expectError(.invalidCredentials) { try await other.logOn(userID: alice, password: "wrong") }
                try await expectError(.invalidCredentials) { try await other.logOn(userID: 999_999, password: "right") }
                #expect(other.loggedOnUser == nil)
                #expect(try await other.userExists(alice))
                let result = try await other.logOn(userID: alice, password: "right")
                #expect(result.user.userID == alice)
                #expect(result.user.isOnline)
                #expect(result.storedMessages == 0)
            }
        }
    }

    @Test("repeated failures are throttled with a retry-after")
    func throttling() async throws {
        // The server's clock stands still until the test moves it: the back-off cannot pass
        // while a loaded machine answers slowly.
        let clock = ManualClock()
        try await withTestServer(ServerChanges { $0.clock = clock.serverClock }) { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let guesser = clients[1].client
                let alice = try await clients[0].register("alice", password: "right")
                try await clients[0].client.logOff()
                for _ in 1...4 {
                    try await expectError(.invalidCredentials) {
                        try await guesser.logOn(userID: alice, password: "guess")
                    }
                }
                let throttled = try await expectError(.tooManyAttempts) {
                    try await guesser.logOn(userID: alice, password: "right")
                }
                let retryAfter = try #require(throttled.retryAfterMilliseconds)
                #expect((1...1000).contains(retryAfter))
                // Once the back-off has passed, the right password works (and resets the count).
                clock.advance(by: .milliseconds(Int(retryAfter) + 20))
                try await guesser.logOn(userID: alice, password: "right")
                #expect(guesser.loggedOnUser == alice)
            }
        }
    }

    @Test("a user has one session: a second logon is refused")
    func oneSessionPerUser() async throws {
        try await withTestServer { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice", password: "pw")
                try await expectError(.sessionExists) {
                    try await clients[1].client.logOn(userID: alice, password: "pw")
                }
                #expect(try await clients[0].client.userInfo(alice).isOnline)
                try await clients[0].client.logOff()
                try await clients[1].client.logOn(userID: alice, password: "pw")
            }
        }
    }

    @Test("with replacesExistingSession the newer logon wins and the older session is told")
    func sessionReplaced() async throws {
        try await withTestServer(ServerChanges { $0.replacesExistingSession = true }) { server in
            try await withTestClients(3, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice", password: "pw")
                let bob = try await clients[2].register("bob")
                let result = try await clients[1].client.logOn(userID: alice, password: "pw")
                #expect(result.user.userID == alice)

                try await clients[0].waitForEvent("the session-replaced event") { event -> String? in
                    if case .sessionReplaced(let reason) = event { return reason }
                    return nil
                }
                // The replaced client stops instead of fighting for the session.
                try await clients[0].waitForEvent("the old client to stop") { event in
                    event == .connectionStateChanged(.stopped) ? true : nil
                }
                #expect(clients[0].client.loggedOnUser == nil)

                // Messages now reach the new session.
                let results = try await clients[2].client.send(.text("to the new session"), to: [alice])
                #expect(results.map(\.status) == [.acceptedOnline])
                let messages = try await clients[1].waitForMessages(1)
                #expect(messages.first?.body == .text("to the new session"))
                #expect(messages.first?.sender == bob)
            }
        }
    }

    @Test("the default password cost works end to end")
    func defaultPasswordCost() async throws {
        try await withTestServer(ServerChanges { $0.passwordCost = .default }) { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice", password: "strong secret")
                try await clients[0].client.logOff()
                try await expectError(.invalidCredentials) {
                    try await clients[1].client.logOn(userID: alice, password: "strong secreT")
                }
                try await clients[1].client.logOn(userID: alice, password: "strong secret")
            }
        }
    }
}

@Suite("Password guessing", .timeLimit(.minutes(1)))
struct PasswordGuessingTests {
    @Test("parallel wrong logons from one address are mostly refused unchecked; a known good source still logs on")
    func parallelGuesses() async throws {
        // The real password cost, so that checks take as long as they do in production.
        try await withTestServer(ServerChanges { $0.passwordCost = .default }) { server in
            try await withTestClient(of: server.clientConfiguration) { owner in
                // Registered from 127.0.0.1: a known good source for alice from then on.
                let alice = try await owner.register("alice", password: "right")
                try await owner.client.logOff()

                // 200 connections from another address guess at the same instant.
                let guessers = try await withThrowingTaskGroup(of: RawConnection.self) { group in
                    for _ in 0..<200 {
                        group.addTask {
                            let raw = try await RawConnection.connect(to: server.address, from: "127.0.0.2")
                            try await raw.hello()
                            return raw
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                var guess = Parley_V1_LogonRequest()
                guess.userID = alice.rawValue
                guess.password = "guess"
                let codes = try await withThrowingTaskGroup(of: ParleyError.Code.self) { group in
                    for raw in guessers {
                        group.addTask { [guess] in
                            ParleyError(errorFrame: try await raw.request(.logOn, guess)).code
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let checked = codes.filter { $0 == .invalidCredentials }.count
                let refused = codes.filter { $0 == .tooManyAttempts }.count
                #expect(checked + refused == 200)
                #expect(checked <= 10, "\(checked) of 200 parallel guesses got a password check")

                // Keep guessing until alice is blocked for sources it does not know.
                let newcomer = try await RawConnection.connect(to: server.address, from: "127.0.0.3")
                try await newcomer.hello()
                for raw in guessers.prefix(4) {
                    _ = try await raw.request(.logOn, guess)
                }
                var right = guess
                right.password = "right"
                #expect(ParleyError(errorFrame: try await newcomer.request(.logOn, right)).code == .tooManyAttempts)

                // The known source logs on with the right password all the same.
                let result = try await owner.client.logOn(userID: alice, password: "right")
                #expect(result.user.userID == alice)

                for raw in guessers { await raw.close() }
                await newcomer.close()
            }
        }
    }
}
