import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyServer
import ParleyTesting
import Synchronization
import Testing

/// A loopback node configuration with short timers.
func makeNodeConfiguration(dataDirectory: String, name: String) -> ParleyNode.Configuration {
    var configuration = ParleyNode.Configuration(dataDirectory: dataDirectory, name: name)
    configuration.listenHost = "127.0.0.1"
    configuration.heartbeatInterval = .milliseconds(250)
    configuration.peerTimeout = .seconds(1)
    return configuration
}

/// A node named `name` with its data in a subdirectory of `directory`, on the fake `lan`.
func makeLANNode(_ name: String, in directory: TemporaryDirectory, lan: FakeLAN) throws -> ParleyNode {
    try ParleyNode(
        configuration: makeNodeConfiguration(dataDirectory: directory.subdirectory(name), name: name),
        discovery: FakeDiscovery(lan: lan),
        logger: makeTestLogger(name)
    )
}

/// Records a node's events and waits for the ones a test expects.
final class EventRecorder: Sendable {
    private let events = Mutex<[ParleyNode.Event]>([])

    func append(_ event: ParleyNode.Event) { events.withLock { $0.append(event) } }

    var all: [ParleyNode.Event] { events.withLock { $0 } }

    var messages: [Message] {
        all.compactMap { event in
            if case .messageReceived(let message, _, _) = event { return message }
            return nil
        }
    }

    /// Waits until `condition` holds for the events so far, at most `timeout`.
    func wait(
        _ what: String,
        timeout: Duration = .seconds(30),
        until condition: ([ParleyNode.Event]) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(all) {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what); events: \(all)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Runs two nodes, ann and bob, on one fake LAN in `directory` until each has seen the other
/// come up; `body` gets each node with its events.
func withTwoLANNodes(
    in directory: TemporaryDirectory,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ParleyNode, EventRecorder, ParleyNode, EventRecorder) async throws -> Void
) async throws {
    let lan = FakeLAN()
    let ann = try makeLANNode("ann", in: directory, lan: lan)
    let bob = try makeLANNode("bob", in: directory, lan: lan)
    try await withRunningNode(ann) { annEvents in
        try await withRunningNode(bob) { bobEvents in
            try await annEvents.wait("bob to show up") { $0.hasPeerUp(bob.nodeID) }
            try await bobEvents.wait("ann to show up") { $0.hasPeerUp(ann.nodeID) }
            try await body(ann, annEvents, bob, bobEvents)
        }
    }
}

/// Runs `node` for the duration of `body`, recording its events; `afterEvent`, given the number
/// of events read so far, lets a test read them at its own pace.
func withRunningNode<T: Sendable>(
    _ node: ParleyNode,
    afterEvent: (@Sendable (_ count: Int) async -> Void)? = nil,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (EventRecorder) async throws -> T
) async throws -> T {
    let recorder = EventRecorder()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await node.run() }
        group.addTask {
            var count = 0
            for await event in node.events {
                recorder.append(event)
                count += 1
                await afterEvent?(count)
            }
        }
        do {
            _ = try await node.listeningPort
            let result = try await body(recorder)
            await node.shutdown()
            try await group.waitForAll()
            return result
        } catch {
            await node.shutdown()
            try? await group.waitForAll()
            throw error
        }
    }
}

extension [ParleyNode.Event] {
    func hasPeerUp(_ node: ParleyNode.NodeID) -> Bool {
        contains { event in
            if case .peerUp(let info) = event, info.nodeID == node { return true }
            if case .peerChanged(let info) = event, info.nodeID == node, info.linked { return true }
            return false
        }
    }

    func isLinked(to node: ParleyNode.NodeID) -> Bool {
        var linked = false
        for event in self {
            switch event {
            case .peerUp(let info) where info.nodeID == node, .peerChanged(let info) where info.nodeID == node:
                linked = info.linked
            case .peerDown(let down) where down == node:
                linked = false
            default:
                break
            }
        }
        return linked
    }
}

/// Runs a real server (loopback, fast password hash) on `dataDirectory` for the duration of
/// `body`, then shuts it down.
func withServer<T: Sendable>(
    dataDirectory: String,
    port: Int = 0,
    configure: (inout ParleyServer.Configuration) -> Void = { _ in },
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ParleyServer, ParleyClient.Configuration) async throws -> T
) async throws -> T {
    var configuration = makeServerConfiguration(dataDirectory: dataDirectory, port: port)
    configure(&configuration)
    let server = ParleyServer(configuration: configuration, logger: makeTestLogger("server"))
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run() }
        do {
            let address = try await server.listeningAddress
            var client = ParleyClient.Configuration(host: address.host, port: address.port)
            if let fingerprint = server.tlsCertificateFingerprint { client.security = .tls(.fingerprint(fingerprint)) }
            let result = try await body(server, client)
            await server.shutdown()
            try await group.waitForAll()
            return result
        } catch {
            await server.shutdown()
            try? await group.waitForAll()
            throw error
        }
    }
}

/// Registers users through a plain client; returns their IDs. Each password is "pw-" + name.
func registerUsers(_ names: [String], on server: ParleyClient.Configuration) async throws -> [UserID] {
    var users: [UserID] = []
    for name in names {
        let client = ParleyClient(configuration: server, logger: makeTestLogger("client"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            users.append(try await client.register(UserInfo(userName: name), password: "pw-\(name)").userID)
            await client.shutdownGracefully()
            try await group.waitForAll()
        }
    }
    return users
}

/// A node of user `user` in client/server mode, on `lan` if given.
func makeServerNode(
    _ name: String,
    _ user: UserID,
    directory: TemporaryDirectory,
    server: ParleyClient.Configuration,
    allowsDirectLinks: Bool = true,
    lan: FakeLAN? = nil
) throws -> ParleyNode {
    var configuration = makeNodeConfiguration(dataDirectory: directory.subdirectory(name), name: name)
    configuration.server = server
    configuration.credentials = .init(userID: user, password: "pw-\(name)")
    configuration.allowsDirectLinks = allowsDirectLinks
    return try ParleyNode(
        configuration: configuration, discovery: lan.map { FakeDiscovery(lan: $0) }, logger: makeTestLogger(name))
}

extension EventRecorder {
    func waitForLogon() async throws {
        try await wait("logon") { events in
            events.contains { if case .serverConnection(.loggedOn) = $0 { true } else { false } }
        }
    }

    /// The routes of the received messages, in order.
    var receivedRoutes: [ParleyNode.Route] {
        all.compactMap { event in
            if case .messageReceived(_, _, let route) = event { return route }
            return nil
        }
    }
}
