// Runs a Parley server inside a program, with a server application that answers the messages
// users send to the server's own address, as a swift-service-lifecycle service.
import Logging
import ParleyCore
import ParleyServer
import ServiceLifecycle

// snippet.application
/// Answers every text message sent to the server's address with the same text, upper-cased.
struct Shouter: ParleyServerApplication {
    func receive(_ message: Message, from server: ParleyServer) async {
        guard case .text(let text) = message.body else { return }
        _ = try? await server.send(.text(text.uppercased()), to: [message.sender])
    }
}
// snippet.end

// snippet.configuration
var configuration = ParleyServer.Configuration(dataDirectory: "/var/lib/myapp/parley")
configuration.port = 7420  // the default; 0 lets the system choose
configuration.tls = .selfSigned  // the default: a certificate made at the first start
configuration.application = Shouter()
let server = ParleyServer(configuration: configuration, logger: Logger(label: "parley.server"))
// snippet.end

// snippet.run
let services = ServiceGroup(
    services: [server],
    gracefulShutdownSignals: [.sigterm, .sigint],
    logger: Logger(label: "myapp")
)
try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await services.run() }
    let address = try await server.listeningAddress
    if let fingerprint = server.tlsCertificateFingerprint {
        print("tls fingerprint \(fingerprint)")  // what clients pin
    }
    print("listening on \(address)")
    try await group.waitForAll()
}
// snippet.end
