// Embeds a LAN node: direct links to the peers Avahi finds, the server when there is one, and
// the durable outbox when neither route exists.
import Logging
import ParleyAvahi
import ParleyClient
import ParleyCore
import ParleyNode

// snippet.configuration
let dataDirectory = "/var/lib/myapp/parley"  // the node key, the registry and the outbox
var configuration = ParleyNode.Configuration(dataDirectory: dataDirectory, name: "alice")
// Optional: without a server the node works peer to peer, on the LAN only.
var server = try ParleyClient.Configuration(server: "parley.example.com:7420", retry: .lan)
server.security = .tls(.trustOnFirstUse(knownServersFile: dataDirectory + "/known-servers"))
configuration.server = server
configuration.credentials = ParleyNode.Credentials(userID: 1000, password: "secret")
// snippet.end

// snippet.discovery
// Discovery leaves out the node's own advertisement, so it needs the node's ID, which comes
// from the node's key (made in the data directory if missing).
let nodeID = try ParleyNode.nodeID(dataDirectory: dataDirectory)
let discovery = try AvahiDiscovery(
    configuration: .init(ownNodeID: nodeID),
    logger: Logger(label: "parley.discovery")
)
let node = try ParleyNode(configuration: configuration, discovery: discovery, logger: Logger(label: "parley.node"))
// snippet.end

// snippet.run
try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await discovery.run() }
    group.addTask { try await node.run() }
    group.addTask {
        for await event in node.events {
            switch event {
            case .peerUp(let peer):
                print("\(peer.name) (node \(peer.nodeID)) is on the LAN")
            case .peerDown(let peer):
                print("node \(peer) is gone")
            case .messageReceived(let message, _, let route):
                if case .text(let text) = message.body { print("\(message.sender) via \(route): \(text)") }
            case .routeChanged(let recipient, let route):
                print("messages to \(recipient) now go \(route)")
            default:
                continue
            }
        }
    }

    let sent = try await node.send(.text("hello"), to: .user(1001))
    print("message \(sent.messageID) went \(sent.route)")  // direct, server or queued

    // Later: withdraw the advertisement, log off, close the links. The outbox stays on disk.
    await node.shutdown()
    discovery.shutDown()
    try await group.waitForAll()
}
// snippet.end
