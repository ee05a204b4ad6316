import Foundation
import Logging
import ParleyCore
import ParleyNode

extension ReceiveCommand {
    /// `receive --data DIR`: runs the node kept in DIR, logged on as the user, and prints messages
    /// and saves files (with `--files`) as they come, directly from other nodes or through the
    /// server, until `--count` of them, `--timeout`, or the end of the node.
    func receiveAsNode(dataDirectory: String) async throws {
        let out = Output(json: output.json)
        let (node, discovery) = try NodeSetup(
            dataDirectory: dataDirectory, connection: connection, credentials: credentials
        )
        .makeNode(logger: Logger(label: "parley.node"))
        let (count, user) = (count, credentials.user)
        let reception = files.map { (folder: $0, policy: acceptFiles) }
        let deadline = ContinuousClock.Instant.after(seconds: timeout)
        let received = try await withThrowingTaskGroup(of: Void.self, returning: Int.self) { group in
            group.addTask { try await discovery.run() }
            group.addTask { try await node.run() }
            let received = try await withDeadline(deadline) { () async throws -> Int in
                var received = 0
                for await event in node.events {
                    switch event {
                    case .serverConnection(.loggedOn):
                        try out.emitJSON(LoggedOnRecord(userID: user.rawValue, storedMessages: 0))
                    case .serverLogOnFailed(let error):
                        throw error
                    case .messageReceived(let message, _, _):
                        let record = MessageRecord(message)
                        try out.emit(record, text: record.line)
                        received += 1
                    case .fileOffered(let offer):
                        guard let reception else {
                            try out.emit(
                                TransferRecord(
                                    event: "offered", id: offer.id.rawValue, name: offer.name,
                                    peer: offer.sender.rawValue),
                                text:
                                    "file \(offer.name) (\(offer.isStream ? "a stream" : "\(offer.size) bytes")) from \(offer.sender) is offered"
                            )
                            continue
                        }
                        if try await Self.handle(
                            offer, node: node, folder: reception.folder, policy: reception.policy, out: out)
                        {
                            received += 1
                        }
                    case .transferStatus(let status):
                        try out.emit(
                            TransferRecord(status),
                            text:
                                "transfer \(status.id) to \(status.recipient): \(status.outcome.rawValue) \(status.reason)"
                        )
                    default:
                        continue
                    }
                    if let count, received >= count { return received }
                }
                return received
            }
            await node.shutdown()
            discovery.shutDown()
            group.cancelAll()
            try await group.waitForAll()
            return received
        }
        if let count, received < count { throw ExitStatus.incomplete }
    }

    /// Saves (or declines) a file offered to the node as `--files` and `--accept-files` say;
    /// returns whether a file was saved.
    static func handle(_ offer: FileOffer, node: ParleyNode, folder: String, policy: FileAcceptance, out: Output)
        async throws -> Bool
    {
        try await handle(
            offer, folder: folder, policy: policy, out: out,
            decline: { try await node.declineFile($0, reason: $1) },
            receive: { try await node.receiveFile($0, into: folder, progress: $1) })
    }
}
