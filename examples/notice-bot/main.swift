// A server application built on the server's hooks: it greets every user who logs on, answers
// messages sent to the server's address and the `time` command, and the program broadcasts a
// notice to everyone online.
// A client shows what users see. Uses only Parley's public products.
//
//     swift run example-notice-bot
import Foundation
import ParleyClient
import ParleyCore
import ParleyServer

/// Greets users at logon and answers "time" (as a text message) with the server's clock; the
/// same answer comes for the `time` command (registered below, docs/PROTOCOL.md section 24).
struct NoticeBot: ParleyServerApplication {
    func userLoggedOn(_ session: ServerSession, server: ParleyServer) async {
        _ = try? await server.send(.text("welcome, user \(session.user)"), to: [session.user])
    }

    func receive(_ message: Message, from server: ParleyServer) async {
        guard case .text(let text) = message.body else { return }
        let answer =
            text.trimmingCharacters(in: .whitespaces).lowercased() == "time"
            ? "the server's time is \(Date().formatted(.iso8601))"
            : "notice-bot answers \"time\""
        _ = try? await server.send(.text(answer), to: [message.sender])
    }
}

let data = FileManager.default.temporaryDirectory.appendingPathComponent("parley-notice-\(UUID().uuidString)")
defer { try? FileManager.default.removeItem(at: data) }

var configuration = ParleyServer.Configuration(dataDirectory: data.path)
configuration.host = "127.0.0.1"
configuration.port = 0
configuration.adminSocket = .off
configuration.application = NoticeBot()
let server = ParleyServer(configuration: configuration)
// The `time` command: request/response, run off the event loops, answered with the clock.
try server.commands.register("time") { _ in Array("the server's time is \(Date().formatted(.iso8601))".utf8) }

try await withThrowingTaskGroup(of: Void.self) { group in
    group.addTask { try await server.run() }
    let address = try await server.listeningAddress
    print("server listening on \(address)")

    var clientConfiguration = ParleyClient.Configuration(host: address.host, port: address.port)
    if let fingerprint = server.tlsCertificateFingerprint {
        clientConfiguration.security = .tls(.fingerprint(fingerprint))
    }
    try await withParleyClient(configuration: clientConfiguration) { client in
        let me = try await client.register(UserInfo(userName: "alice"), password: "secret")
        print("registered as user \(me.userID)")
        var events = client.events.makeAsyncIterator()
        /// The text of the next message the client gets.
        func nextText() async -> String? {
            while let event = await events.next() {
                if case .message(let message) = event, case .text(let text) = message.body { return text }
            }
            return nil
        }
        print("alice got: \(await nextText() ?? "nothing")")
        _ = try await client.send(.text("time"), to: [UserID.server])
        print("alice got: \(await nextText() ?? "nothing")")
        let time = try await client.sendCommand("time", timeout: .seconds(5))
        print("alice's time command: \(String(decoding: time, as: UTF8.self))")
        let notified = try await server.broadcast(.text("notice: the server restarts at 18:00"))
        print("broadcast to \(notified.count) online user(s)")
        print("alice got: \(await nextText() ?? "nothing")")
    }
    await server.shutdown()
    try await group.waitForAll()
}
