import Foundation
import NIOPosix
import ParleyClient
import ParleyCore
import ParleyServer
import ParleyTesting
import Testing

/// A server application that records every hook, where it ran, and decides as it is told.
final class HookRecorder: ParleyServerApplication {
    enum Hook: Sendable, Hashable {
        case started
        case stopping
        case connectionOpened(ServerConnection)
        case connectionClosed(ServerConnection)
        case loggedOn(ServerSession)
        case loggedOff(UserID, session: UInt64)
        case registered(UserInfo)
        case infoChanged(UserInfo)
        case error(ParleyError.Code)
        case contactAsked(contact: UserID, owner: UserID)
        case inspected(Message)
    }

    let hooks = Mailbox<Hook>()
    /// The hooks that ran on one of the server's event loops (there must be none).
    let onEventLoop = Mailbox<Hook>()
    let vetoesContacts: Bool
    let inspectsMessages: Bool
    private let allowContact: @Sendable (UserID) async -> Bool
    private let decide: @Sendable (Message) async -> MessageDecision

    init(
        vetoesContacts: Bool = false,
        inspectsMessages: Bool = false,
        allowContact: @escaping @Sendable (UserID) async -> Bool = { _ in true },
        decide: @escaping @Sendable (Message) async -> MessageDecision = { _ in .deliver }
    ) {
        self.vetoesContacts = vetoesContacts
        self.inspectsMessages = inspectsMessages
        self.allowContact = allowContact
        self.decide = decide
    }

    private func record(_ hook: Hook) {
        if MultiThreadedEventLoopGroup.currentEventLoop != nil { onEventLoop.append(hook) }
        hooks.append(hook)
    }

    func serverStarted(_ server: ParleyServer) async { record(.started) }
    func serverStopping(_ server: ParleyServer) async { record(.stopping) }
    func connectionOpened(_ connection: ServerConnection, server: ParleyServer) async {
        record(.connectionOpened(connection))
    }
    func connectionClosed(_ connection: ServerConnection, server: ParleyServer) async {
        record(.connectionClosed(connection))
    }
    func userLoggedOn(_ session: ServerSession, server: ParleyServer) async { record(.loggedOn(session)) }
    func userLoggedOff(_ user: UserID, session: UInt64, server: ParleyServer) async {
        record(.loggedOff(user, session: session))
    }
    func userRegistered(_ user: UserInfo, server: ParleyServer) async { record(.registered(user)) }
    func userInfoChanged(_ user: UserInfo, server: ParleyServer) async { record(.infoChanged(user)) }
    func errorOccurred(_ error: ParleyError, server: ParleyServer) async { record(.error(error.code)) }

    func shouldAddContact(_ contact: UserID, to owner: UserID, server: ParleyServer) async -> Bool {
        record(.contactAsked(contact: contact, owner: owner))
        return await allowContact(contact)
    }

    func inspect(_ message: Message, server: ParleyServer) async -> MessageDecision {
        record(.inspected(message))
        return await decide(message)
    }

    /// Waits for the first hook `match` accepts.
    func wait<T: Sendable>(_ description: String, _ match: @escaping @Sendable (Hook) -> T?) async throws -> T {
        try await hooks.wait(for: description) { hooks, _ in hooks.lazy.compactMap(match).first }
    }
}

@Suite("Server application hooks", .timeLimit(.minutes(1)))
struct ServerApplicationHookTests {
    @Test("every hook fires with the right data, in order, off the event loops")
    func hooksFire() async throws {
        let recorder = HookRecorder()
        try await withTestServer(ServerChanges { $0.application = recorder }) { server in
            try await recorder.wait("started") { $0 == .started ? () : nil }
            let alice = try await withTestClient(of: server.clientConfiguration) { client in
                let alice = try await client.register("alice")
                let registered = try await recorder.wait("registered") { hook -> UserInfo? in
                    if case .registered(let user) = hook { return user }
                    return nil
                }
                #expect(registered.userID == alice)
                #expect(registered.userName == "alice")

                let session = try await recorder.wait("logged on") { hook -> ServerSession? in
                    if case .loggedOn(let session) = hook { return session }
                    return nil
                }
                #expect(session.user == alice)
                #expect(session.address.hasPrefix("127.0.0.1:"))
                #expect(session.agent == server.clientConfiguration.agent)
                // The session's own connection (a client that had to reconnect opened others first).
                let opened = try await recorder.wait("connection opened") { hook -> ServerConnection? in
                    if case .connectionOpened(let connection) = hook, connection.id == session.id { return connection }
                    return nil
                }
                #expect(opened.id == session.id)
                #expect(opened.address == session.address)

                _ = try await client.client.updateUserInfo(UserInfo(userName: "alice", firstName: "Alice"))
                let changed = try await recorder.wait("info changed") { hook -> UserInfo? in
                    if case .infoChanged(let user) = hook { return user }
                    return nil
                }
                #expect(changed.userID == alice)
                #expect(changed.firstName == "Alice")

                try await client.client.logOff()
                let loggedOff = try await recorder.wait("logged off") { hook -> UInt64? in
                    if case .loggedOff(let user, let session) = hook, user == alice { return session }
                    return nil
                }
                #expect(loggedOff == session.id)
                return alice
            }
            let closed = try await recorder.wait("connection closed") { hook -> ServerConnection? in
                if case .connectionClosed(let connection) = hook { return connection }
                return nil
            }
            #expect(closed.address.hasPrefix("127.0.0.1:"))
            #expect(alice != .server)
        }
        try await recorder.wait("stopping") { $0 == .stopping ? () : nil }
        let order = recorder.hooks.items.compactMap { hook -> String? in
            switch hook {
            case .started: "started"
            case .registered: "registered"
            case .loggedOn: "logged on"
            case .infoChanged: "info changed"
            case .loggedOff: "logged off"
            case .stopping: "stopping"
            default: nil
            }
        }
        #expect(order == ["started", "registered", "logged on", "info changed", "logged off", "stopping"])
        #expect(recorder.onEventLoop.items.isEmpty, "hooks ran on an event loop: \(recorder.onEventLoop.items)")
    }

    @Test("the application vetoes a contact: CONTACT_REFUSED, and other contacts are added")
    func vetoedContact() async throws {
        let refused = Mailbox<UserID>()
        let recorder = HookRecorder(vetoesContacts: true, allowContact: { contact in !refused.items.contains(contact) })
        try await withTestServer(ServerChanges { $0.application = recorder }) { server in
            try await withTestClients(3, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let carol = try await clients[2].register("carol")
                refused.append(bob)

                let error = try await expectError(.contactRefused) { try await clients[0].client.addContact(bob) }
                #expect(error.message.contains("\(bob)"))
                #expect(try await clients[0].client.contacts().contacts.isEmpty)
                let asked = try await recorder.wait("the veto question") { hook -> UserID? in
                    if case .contactAsked(let contact, let owner) = hook, owner == alice { return contact }
                    return nil
                }
                #expect(asked == bob)

                #expect(try await clients[0].client.addContact(carol).userID == carol)
                #expect(try await clients[0].client.contacts().contacts.map(\.userID) == [carol])
            }
        }
        #expect(recorder.onEventLoop.items.isEmpty)
    }

    @Test("the application rejects one message with a code and rewrites another; nothing rejected is stored")
    func rejectedAndRewrittenMessages() async throws {
        let recorder = HookRecorder(
            inspectsMessages: true,
            decide: { message in
                guard case .text(let text) = message.body else { return .deliver }
                switch text {
                case "buy cheap watches": return .reject(reason: "no spam here")
                case "hello": return .replaceText("hello (checked by the server)")
                default: return .deliver
                }
            }
        )
        try await withTestServer(ServerChanges { $0.application = recorder }) { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                let alice = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let sender = clients[0].client

                let rejected = try await expectError(.messageRejected) {
                    try await sender.send(.text("buy cheap watches"), to: [bob])
                }
                #expect(rejected.message == "no spam here")
                let results = try await sender.send(.text("hello"), to: [bob])
                #expect(results.map(\.recipient) == [bob])
                _ = try await sender.send(.binary([1, 2, 3]), to: [bob])

                let received = try await clients[1].waitForMessages(2)
                #expect(received.map(\.body) == [.text("hello (checked by the server)"), .binary([1, 2, 3])])
                #expect(received.allSatisfy { $0.sender == alice })

                let inspected = try await recorder.hooks.wait(for: "three inspections") { hooks, _ -> [Message]? in
                    let messages = hooks.compactMap { hook -> Message? in
                        if case .inspected(let message) = hook { return message }
                        return nil
                    }
                    return messages.count >= 3 ? messages : nil
                }
                #expect(inspected.map(\.body) == [.text("buy cheap watches"), .text("hello"), .binary([1, 2, 3])])
                #expect(inspected.allSatisfy { $0.sender == alice && $0.recipients == [bob] })
            }
        }
        #expect(recorder.onEventLoop.items.isEmpty)
    }

    @Test("an application that does not decide in time: the message is rejected and the contact refused")
    func slowApplicationIsBounded() async throws {
        let slow: @Sendable () async -> Void = {
            // Cancelled by the server when its deadline passes.
            try? await Task.sleep(for: .seconds(50))
        }
        let recorder = HookRecorder(
            vetoesContacts: true,
            inspectsMessages: true,
            allowContact: { _ in
                await slow()
                return true
            },
            decide: { _ in
                await slow()
                return .deliver
            }
        )
        try await withTestServer(
            ServerChanges {
                $0.application = recorder
                $0.applicationDecisionTimeout = .milliseconds(200)
            }
        ) { server in
            try await withTestClients(2, of: server.clientConfiguration) { clients in
                _ = try await clients[0].register("alice")
                let bob = try await clients[1].register("bob")
                let late = try await expectError(.messageRejected) {
                    try await clients[0].client.send(.text("anyone there?"), to: [bob])
                }
                #expect(late.message.contains("did not decide in time"))
                try await expectError(.contactRefused) { try await clients[0].client.addContact(bob) }
                // The connection still works after the late decisions.
                #expect(try await clients[0].client.contacts().contacts.isEmpty)
            }
        }
    }
}
