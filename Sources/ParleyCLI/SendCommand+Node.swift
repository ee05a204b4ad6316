import ArgumentParser
import Foundation
import Logging
import ParleyCore
import ParleyNode
import Synchronization

extension SendCommand {
    /// `send --data DIR`: starts the node kept in DIR, gives discovery until `--wait` to link the
    /// recipients' nodes, sends by the best route, prints each recipient's route, and stops.
    func sendAsNode(dataDirectory: String) async throws {
        let out = Output(json: output.json)
        let body = try messageBody()
        var setup = NodeSetup(
            dataDirectory: dataDirectory,
            name: name ?? Self.defaultName(dataDirectory: dataDirectory)
        )
        setup.server = server
        setup.retry = retry ?? .lan
        setup.security = try transport.security(defaultKnownServers: dataDirectory + "/known-servers")
        if let user = credentials.user, let password = credentials.password {
            setup.credentials = ParleyNode.Credentials(userID: user, password: password)
        }
        setup.allowsDirectLinks = !noDirect
        let (node, discovery) = try setup.makeNode(logger: Logger(label: "parley.node"))
        let recipients = self.recipients
        let deadline = ContinuousClock.now + .seconds(wait)
        let id = MessageID.random()
        let server = ServerWatch()
        let sending = try await withThrowingTaskGroup(
            of: Void.self,
            returning: Result<[(UserID, Result<ParleyNode.SendResult, ParleyError>)], ParleyError>.self
        ) { group in
            group.addTask { try await discovery.run() }
            group.addTask { try await node.run() }
            group.addTask {
                for await event in node.events {
                    switch event {
                    case .messageReceived:
                        // Whatever arrives for this node's user meanwhile is printed, not dropped.
                        let record = NodeEventRecord(event)
                        try out.emit(record, text: record.line)
                    case .serverConnection(.loggedOn):
                        server.progress.withLock { $0 = .loggedOn }
                    case .serverLogOnFailed(let error):
                        server.progress.withLock { $0 = .refused(error) }
                    default:
                        continue
                    }
                }
            }
            _ = try await node.listeningPort
            let refusal = await Self.waitForRoutes(
                to: Set(recipients), node: node, server: server, usesServer: setup.server != nil, until: deadline)
            let sending: Result<[(UserID, Result<ParleyNode.SendResult, ParleyError>)], ParleyError>
            if let refusal {
                sending = .failure(refusal)
            } else {
                var outcomes: [(UserID, Result<ParleyNode.SendResult, ParleyError>)] = []
                for recipient in recipients {
                    do throws(ParleyError) {
                        outcomes.append((recipient, .success(try await node.send(body, to: .user(recipient), id: id))))
                    } catch {
                        outcomes.append((recipient, .failure(error)))
                    }
                }
                sending = .success(outcomes)
            }
            await node.shutdown()
            discovery.shutDown()
            group.cancelAll()
            try await group.waitForAll()
            return sending
        }
        let outcomes = try sending.get()
        var failed = false
        for (recipient, outcome) in outcomes {
            switch outcome {
            case .success(let result):
                let record = NodeEventRecord.sent(result, to: .user(recipient))
                try out.emit(record, text: record.line)
            case .failure(let error):
                failed = true
                let record = NodeEventRecord.error("\(recipient): \(error.message)", command: "send")
                try out.emit(record, text: record.line)
            }
        }
        if failed { throw ExitStatus.recipientFailed }
    }

    /// The LAN name of a node started by `send` without `--name`: the data directory's name.
    static func defaultName(dataDirectory: String) -> String {
        let name = URL(fileURLWithPath: dataDirectory).standardizedFileURL.lastPathComponent
        return name.isEmpty || name == "/" ? "parley" : name
    }

    /// How far the node's server session got.
    enum ServerProgress {
        case waiting
        case loggedOn
        case refused(ParleyError)
    }

    final class ServerWatch: Sendable {
        let progress = Mutex(ServerProgress.waiting)
    }

    /// Returns once the messages have a route: logged on to the server (which either stores them
    /// or names the recipients' nodes for direct links), or a node of every user in `users`
    /// linked on the LAN; or at `deadline`. Returns the server's refusal of the credentials.
    private static func waitForRoutes(
        to users: Set<UserID>,
        node: ParleyNode,
        server: ServerWatch,
        usesServer: Bool,
        until deadline: ContinuousClock.Instant
    ) async -> ParleyError? {
        while ContinuousClock.now < deadline {
            switch server.progress.withLock({ $0 }) {
            case .refused(let error): return error
            case .loggedOn: return nil
            case .waiting: break
            }
            let linked = Set(node.peers().filter(\.linked).compactMap(\.userID))
            if users.isSubset(of: linked) { return nil }
            do {
                try await Task.sleep(for: .milliseconds(50))
            } catch {
                return nil  // cancelled: the command is on its way out
            }
        }
        if case .refused(let error) = server.progress.withLock({ $0 }) { return error }
        if usesServer { Output.note("not logged on to the server within --wait; sending by the other routes") }
        return nil
    }
}
