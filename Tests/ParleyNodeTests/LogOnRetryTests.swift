import Foundation
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct LogOnRetryTests {
    /// The server still holds the user's session (from a run that crashed, say) and refuses the
    /// node's logon with SESSION_EXISTS: the node keeps trying, with a backoff, and logs on by
    /// itself once that session is gone.
    @Test func aNodeRefusedWithSessionExistsLogsOnOnceTheOldSessionIsGone() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, server in
            let users = try await registerUsers(["ann"], on: server)
            let holder = ParleyClient(configuration: server, logger: makeTestLogger("holder"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await holder.run() }
                try await holder.logOn(userID: users[0], password: "pw-ann")

                let ann = try makeServerNode("ann", users[0], directory: directory, server: server)
                try await withRunningNode(ann) { annEvents in
                    try await annEvents.wait("a refusal that is tried again") { events in
                        events.contains { event in
                            if case .serverLogOnDeferred(let error, _) = event { return error.code == .sessionExists }
                            return false
                        }
                    }
                    #expect(
                        !annEvents.all.contains { if case .serverLogOnFailed = $0 { true } else { false } },
                        "\(annEvents.all)")
                    await holder.shutdownGracefully()
                    try await annEvents.waitForLogon()
                    // Logged on for real: the server takes its messages.
                    let sent = try await ann.send(.text("back"), to: .user(users[0]))
                    #expect(sent.route == .server)
                }
                try await group.waitForAll()
            }
        }
    }

    /// Wrong credentials are not tried again.
    @Test func wrongCredentialsEndTheTries() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, server in
            let users = try await registerUsers(["ann"], on: server)
            var configuration = makeNodeConfiguration(dataDirectory: directory.subdirectory("ann"), name: "ann")
            configuration.server = server
            configuration.credentials = .init(userID: users[0], password: "wrong")
            let ann = try ParleyNode(configuration: configuration, discovery: nil, logger: makeTestLogger("ann"))
            try await withRunningNode(ann) { annEvents in
                try await annEvents.wait("the refusal") { events in
                    events.contains { if case .serverLogOnFailed = $0 { true } else { false } }
                }
                #expect(!annEvents.all.contains { if case .serverLogOnDeferred = $0 { true } else { false } })
            }
        }
    }
}
