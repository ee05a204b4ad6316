// Two Parley nodes and a server in one process, on loopback: the nodes log on, the first message
// opens a direct link (the server vouches for each node's key and tells its address), then the
// server stops and the nodes keep talking directly. Uses only Parley's public products.
//
//     swift run example-node-pair
//
// A real program gives each node `discovery: try AvahiDiscovery(...)` (ParleyAvahi) to find
// peers on the LAN without a server, as `parley node` does.
import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyServer

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}

let data = FileManager.default.temporaryDirectory.appendingPathComponent("parley-node-pair-\(UUID().uuidString)")
defer { try? FileManager.default.removeItem(at: data) }

var serverConfiguration = ParleyServer.Configuration(dataDirectory: data.appendingPathComponent("server").path)
serverConfiguration.host = "127.0.0.1"
serverConfiguration.port = 0
let server = ParleyServer(configuration: serverConfiguration)

/// A client of the server at `address`. TLS is on by default: the client pins the certificate
/// the server made at its first start.
func clientConfiguration(server address: (host: String, port: Int)) -> ParleyClient.Configuration {
    var client = ParleyClient.Configuration(host: address.host, port: address.port)
    if let fingerprint = server.tlsCertificateFingerprint { client.security = .tls(.fingerprint(fingerprint)) }
    return client
}

/// A node for `user`, reaching the server at `address` and accepting direct links on loopback.
func makeNode(_ name: String, _ user: UserID, password: String, server address: (host: String, port: Int)) throws
    -> ParleyNode
{
    var configuration = ParleyNode.Configuration(dataDirectory: data.appendingPathComponent(name).path, name: name)
    configuration.server = clientConfiguration(server: address)
    configuration.credentials = ParleyNode.Credentials(userID: user, password: password)
    configuration.listenHost = "127.0.0.1"
    return try ParleyNode(configuration: configuration, discovery: nil)
}

/// Prints `node`'s events until it stops; signals `loggedOn` at each logon.
func printEvents(of node: ParleyNode, _ name: String, loggedOn: AsyncStream<Void>.Continuation) async {
    for await event in node.events {
        switch event {
        case .serverConnection(.loggedOn(let user)):
            print("\(name): logged on as user \(user)")
            loggedOn.yield()
        case .serverConnection(.disconnected):
            print("\(name): the server is gone")
        case .messageReceived(let message, _, let route):
            if case .text(let text) = message.body { print("\(name) <- \(message.sender) via \(route): \(text)") }
        default:
            continue
        }
    }
}

try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await server.run() }
    let address = try await server.listeningAddress
    print("server listening on \(address)")

    // Two users, each registered through a plain client (registering also logs that client on).
    var users: [UserID] = []
    for name in ["ada", "ben"] {
        try await withParleyClient(configuration: clientConfiguration(server: (address.host, address.port))) { client in
            users.append(try await client.register(UserInfo(userName: name), password: "pw-\(name)").userID)
        }
    }
    let ada = try makeNode("ada", users[0], password: "pw-ada", server: (address.host, address.port))
    let ben = try makeNode("ben", users[1], password: "pw-ben", server: (address.host, address.port))
    for (node, name) in [(ada, "ada"), (ben, "ben")] {
        let (loggedOn, signal) = AsyncStream.makeStream(of: Void.self)
        group.addTask { try await node.run() }
        group.addTask { await printEvents(of: node, name, loggedOn: signal) }
        for await _ in loggedOn { break }
    }

    let first = try await ada.send(.text("hello ben"), to: .user(users[1]))
    print("ada -> ben: \(first.route)")

    await server.shutdown()
    let second = try await ben.send(.text("the server stopped, we still talk"), to: .user(users[0]))
    print("ben -> ada: \(second.route)")

    await ada.shutdown()
    await ben.shutdown()
    try await group.waitForAll()
}
