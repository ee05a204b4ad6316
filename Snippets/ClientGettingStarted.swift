// Connects to a Parley server over TLS, logs on, sends a message and prints what arrives.
import ParleyClient
import ParleyCore

// snippet.configuration
// The fingerprint the server printed at its start ("tls fingerprint sha256:...").
guard
    let fingerprint = CertificateFingerprint(
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )
else { fatalError("not a SHA-256 fingerprint") }
var configuration = try ParleyClient.Configuration(server: "127.0.0.1:7420", retry: .lan)
configuration.security = .tls(.fingerprint(fingerprint))
// snippet.end

// snippet.session
try await withParleyClient(configuration: configuration) { client in
    // A new user: `register` creates the account (the server assigns the next free user ID)
    // and logs this client on. An existing user calls `logOn(userID:password:)` instead.
    let me = try await client.register(UserInfo(userName: "alice"), password: "secret")
    print("registered and logged on as user \(me.userID)")

    let results = try await client.send(.text("hello"), to: [1001, 1002])
    for result in results {
        print(result.recipient, result.status)  // acceptedOnline, acceptedOffline or failed(...)
    }

    // Stored messages come first, oldest first, then new ones as they arrive.
    for await event in client.events {
        switch event {
        case .message(let message):
            if case .text(let text) = message.body { print("\(message.sender): \(text)") }
        case .connectionStateChanged(let state):
            print("connection: \(state)")
        default:
            continue
        }
    }
}
// snippet.end
