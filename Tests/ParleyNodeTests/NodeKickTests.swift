import Foundation
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyServer
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct NodeKickTests {
    /// An admin kicks the node's server session (KICKED): the node reports it and does not connect
    /// to the server again by itself.
    @Test func aKickedNodeDoesNotReconnect() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try await withServer(dataDirectory: directory.subdirectory("server")) { server, configuration in
            var configuration = configuration
            configuration.retry = .local
            let users = try await registerUsers(["ann"], on: configuration)
            let ann = try makeServerNode("ann", users[0], directory: directory, server: configuration)
            try await withRunningNode(ann) { events in
                try await events.waitForLogon()
                #expect(try server.kick(user: users[0], reason: "go away"))
                try await events.wait("the kick") { events in
                    events.contains { event in
                        if case .serverConnection(.disconnected(let error?)) = event { return error.code == .kicked }
                        return false
                    }
                }
                // Without the kick rule the node starts a new client after retry.maximumDelay (1 s
                // with .local): nothing to await for something that must not happen, so wait
                // three times that and check that it did not.
                try await Task.sleep(for: .seconds(3))
                #expect(try !server.sessions().contains(where: { $0.user == users[0] }))
                let logons = events.all.filter { event in
                    if case .serverConnection(.loggedOn) = event { return true }
                    return false
                }
                #expect(logons.count == 1, "\(events.all)")
            }
        }
    }
}
