import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyCore
import ParleyNode
import Synchronization

extension SendFileCommand {
    /// `send-file --data DIR`: starts the node kept in DIR, waits (at most `--wait`) for its
    /// server logon, sends the file directly to the recipient's node or through the server, and
    /// through the server waits for the recipient's answer like the client form.
    func sendAsNode(dataDirectory: String) async throws {
        let out = Output(json: output.json)
        let (node, discovery) = try NodeSetup(
            dataDirectory: dataDirectory, connection: connection, credentials: credentials
        )
        .makeNode(logger: Logger(label: "parley.node"))
        let (recipient, name, path, noWait, isStream) = (recipient, name, path, noWait, isStream)
        let shown = shownName
        let logonDeadline = ContinuousClock.now + .seconds(wait)
        let statusDeadline = ContinuousClock.Instant.after(seconds: timeout)
        let watch = NodeWatch()
        let outcome = try await withThrowingTaskGroup(
            of: Void.self, returning: Result<(ParleyNode.FileSendResult, TransferStatus?), any Error>.self
        ) { group in
            group.addTask { try await discovery.run() }
            group.addTask { try await node.run() }
            group.addTask { for await event in node.events { watch.record(event) } }
            _ = try await node.listeningPort
            let outcome: Result<(ParleyNode.FileSendResult, TransferStatus?), any Error>
            do {
                try await watch.waitForLogon(until: logonDeadline)
                let display = ProgressDisplay(out: out, label: shown)
                let sent =
                    if isStream {
                        try await node.sendStream(StandardInputBytes(), named: shown, to: .user(recipient)) {
                            display.update($0)
                        }
                    } else {
                        try await node.sendFile(at: path, to: .user(recipient), name: name) { display.update($0) }
                    }
                display.finish()
                var status: TransferStatus?
                if sent.route == .server, !noWait {
                    try out.emit(
                        TransferRecord(event: "uploaded", id: sent.id.rawValue, name: shown, peer: recipient.rawValue),
                        text: "uploaded \(shown) as transfer \(sent.id)")
                    status = await watch.status(of: sent.id, until: statusDeadline)
                }
                outcome = .success((sent, status))
            } catch {
                outcome = .failure(error)
            }
            await node.shutdown()
            discovery.shutDown()
            group.cancelAll()
            try await group.waitForAll()
            return outcome
        }
        let (sent, status) = try outcome.get()
        switch (sent.route, status) {
        case (.direct, _):
            var record = TransferRecord(event: "completed", id: sent.id.rawValue, name: shown, peer: recipient.rawValue)
            record.route = "direct"
            try out.emit(record, text: "transfer \(sent.id) to \(recipient): completed directly")
        case (_, nil) where noWait:
            var record = TransferRecord(event: "uploaded", id: sent.id.rawValue, name: shown, peer: recipient.rawValue)
            record.route = "server"
            try out.emit(record, text: "uploaded \(shown) as transfer \(sent.id)")
        case (_, nil):
            throw ExitStatus.incomplete
        case (_, let status?):
            var record = TransferRecord(status)
            record.route = "server"
            try out.emit(
                record, text: "transfer \(sent.id) to \(recipient): \(status.outcome.rawValue) \(status.reason)")
            guard status.outcome == .completed else {
                throw ParleyError(
                    code: status.outcome == .declined ? .transferRefused : .transferNotFound,
                    message: "the transfer was \(status.outcome.rawValue)")
            }
        }
    }

    /// What the node's events said so far: its server logon and the transfers' ends.
    final class NodeWatch: Sendable {
        private struct State {
            var loggedOn = false
            var refusal: ParleyError?
            var statuses: [TransferID: TransferStatus] = [:]
        }

        private let state = Mutex(State())

        func record(_ event: ParleyNode.Event) {
            state.withLock { state in
                switch event {
                case .serverConnection(.loggedOn): state.loggedOn = true
                case .serverLogOnFailed(let error): state.refusal = error
                case .transferStatus(let status): state.statuses[status.id] = status
                default: break
                }
            }
        }

        /// Returns once the node is logged on, or at `deadline` (the file may still go directly);
        /// throws the server's refusal of the credentials.
        func waitForLogon(until deadline: ContinuousClock.Instant) async throws(ParleyError) {
            while ContinuousClock.now < deadline {
                let (loggedOn, refusal) = state.withLock { ($0.loggedOn, $0.refusal) }
                if let refusal { throw refusal }
                if loggedOn { return }
                do {
                    try await Task.sleep(for: .milliseconds(50))
                } catch {
                    throw ParleyError(code: .cancelled, message: "cancelled")
                }
            }
            Output.note("not logged on to the server within --wait; sending by the other routes")
        }

        /// The end of transfer `id`, once told, or nil at `deadline` (nil: no deadline).
        func status(of id: TransferID, until deadline: ContinuousClock.Instant?) async -> TransferStatus? {
            while deadline.map({ ContinuousClock.now < $0 }) ?? true {
                if let status = state.withLock({ $0.statuses[id] }) { return status }
                do {
                    try await Task.sleep(for: .milliseconds(50))
                } catch {
                    return nil  // cancelled: the command is on its way out
                }
            }
            return nil
        }
    }
}

extension TransfersCommand {
    /// `transfers resume ID`: continues a transfer the server holds, as its sender (the rest of
    /// `file`) or its recipient (into `folder`, from the partial file there).
    static func resume(
        _ id: TransferID, client: ParleyClient, user: UserID, file: String?, folder: String?, out: Output
    ) async throws {
        guard let held = try await client.transfers().first(where: { $0.offer.id == id }) else {
            throw ParleyError(
                code: .transferNotFound,
                message: """
                    the server holds no transfer \(id) of yours (a direct transfer between nodes is not held \
                    there: run the same send-file --data again to resume it)
                    """)
        }
        let offer = held.offer
        let display = ProgressDisplay(out: out, label: offer.name)
        if offer.recipient == user {
            guard held.isReady else {
                throw ParleyError(
                    code: .transferNotReady, message: "transfer \(id) is still being uploaded by user \(offer.sender)")
            }
            guard let folder else {
                throw CommandFailure(
                    message: "give --files DIR: the folder that holds the partial file of transfer \(id)")
            }
            let saved = try await client.receiveFile(offer, into: folder) { display.update($0) }
            display.finish()
            try out.emit(
                SavedFileRecord(offer, path: saved),
                text: "file from \(offer.sender) saved as \(saved) (\(offer.size) bytes)")
            return
        }
        guard let file else {
            throw CommandFailure(
                message:
                    "give --file PATH: the server does not know where the file of transfer \(id) is on this machine")
        }
        if !held.isReady {
            try await client.sendFile(at: file, to: offer.recipient, name: offer.name, id: id) { display.update($0) }
            display.finish()
        }
        try out.emit(
            TransferRecord(event: "uploaded", id: id.rawValue, name: offer.name, peer: offer.recipient.rawValue),
            text: "uploaded \(offer.name) as transfer \(id)")
    }
}

extension NodeSetup {
    /// The node kept in `dataDirectory` of a user logged on to the server of `connection`
    /// (`send-file --data`, `receive --data`): its LAN name is the directory's name.
    init(dataDirectory: String, connection: ServerOptions, credentials: CredentialOptions) throws {
        self.init(dataDirectory: dataDirectory, name: SendCommand.defaultName(dataDirectory: dataDirectory))
        server = connection.server
        retry = connection.retry
        security = try connection.transport.security(defaultKnownServers: dataDirectory + "/known-servers")
        self.credentials = ParleyNode.Credentials(userID: credentials.user, password: credentials.password)
    }
}
