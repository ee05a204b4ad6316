// A server application that answers every message sent to the server's address, and a client
// that talks to it. Uses only Parley's public products.
//
//     swift run example-echo-bot
import Foundation
import ParleyClient
import ParleyCore
import ParleyServer

/// Echoes text back to its sender, upper-cased.
struct EchoBot: ParleyServerApplication {
    func receive(_ message: Message, from server: ParleyServer) async {
        guard case .text(let text) = message.body else { return }
        _ = try? await server.send(.text(text.uppercased()), to: [message.sender])
    }
}

let data = FileManager.default.temporaryDirectory.appendingPathComponent("parley-echo-\(UUID().uuidString)")
defer { try? FileManager.default.removeItem(at: data) }

var configuration = ParleyServer.Configuration(dataDirectory: data.path)
configuration.host = "127.0.0.1"
configuration.port = 0
configuration.application = EchoBot()
let server = ParleyServer(configuration: configuration)

try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await server.run() }
    let address = try await server.listeningAddress
    print("server listening on \(address)")

    // TLS is on by default; the client pins the certificate the server made at its first start.
    var clientConfiguration = ParleyClient.Configuration(host: address.host, port: address.port)
    if let fingerprint = server.tlsCertificateFingerprint {
        clientConfiguration.security = .tls(.fingerprint(fingerprint))
    }
    try await withParleyClient(configuration: clientConfiguration) { client in
        let me = try await client.register(UserInfo(userName: "echo-user"), password: "secret")
        print("registered as user \(me.userID)")
        let results = try await client.send(.text("hello, server"), to: [UserID.server])
        print("sent: \(results.map { "\($0.recipient): \($0.status)" }.joined(separator: ", "))")
        for await event in client.events {
            if case .message(let reply) = event, case .text(let text) = reply.body {
                print("the server answered: \(text)")
                break
            }
        }
    }
    await server.shutdown()
    try await group.waitForAll()
}
