import Foundation
import Logging
import ParleyAvahi
import ParleyCore
import ParleyLink
import ParleyNode
import ServiceLifecycle

/// Runs a node with its discovery, prints the node's events and carries out the commands read
/// from standard input, until graceful shutdown (SIGTERM, SIGINT) or the `quit` command.
///
/// The end of standard input is not a request to stop: a script or test may close its end of
/// the pipe and keep the node running.
struct NodeConsole: Service {
    let node: ParleyNode
    let discovery: AvahiDiscovery
    let name: String
    let out: Output
    let readsCommands: Bool

    /// The parts of a running console; each child task says which one ended.
    private enum Part {
        case node, discovery, stopper, events, commands
    }

    func run() async throws {
        let (stopRequests, stop) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let (node, discovery, out, readsCommands) = (self.node, self.discovery, self.out, self.readsCommands)
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Part.self) { group in
                group.addTask {
                    try await discovery.run()
                    return .discovery
                }
                group.addTask {
                    try await node.run()
                    return .node
                }
                group.addTask {
                    // Ends at the first stop request, or when the console is cancelled: either
                    // way the node has to stop.
                    for await _ in stopRequests { break }
                    await node.shutdown()
                    return .stopper
                }
                let port = try await node.listeningPort
                try out.emit(
                    NodeEventRecord.started(nodeID: node.nodeID, name: name, port: port),
                    text: NodeEventRecord.started(nodeID: node.nodeID, name: name, port: port).line
                )
                group.addTask {
                    // The line is written before the next event is asked for: that confirms the
                    // message to the node, which otherwise hands it over again after a crash.
                    var events = node.events.makeAsyncIterator()
                    while let event = await events.next() {
                        var record = NodeEventRecord(event)
                        if events.isRedelivery { record.redelivered = true }
                        try out.emit(record, text: record.line)
                    }
                    return .events
                }
                if readsCommands {
                    group.addTask {
                        try await Self.readCommands(node: node, out: out, stop: stop)
                        return .commands
                    }
                }
                // Once the node has stopped and its last events are printed, nothing is left to
                // discover or do: the command reader (blocked on input) is cancelled.
                var (nodeStopped, eventsPrinted) = (false, false)
                while let part = try await group.next() {
                    switch part {
                    case .node:
                        nodeStopped = true
                        discovery.shutDown()
                    case .events:
                        eventsPrinted = true
                    case .discovery, .stopper, .commands:
                        continue
                    }
                    if nodeStopped && eventsPrinted { group.cancelAll() }
                }
            }
        } onGracefulShutdown: {
            stop.yield()
        }
        try out.emit(NodeEventRecord.stopped, text: NodeEventRecord.stopped.line)
    }

    /// Reads commands until `quit` (which requests the stop) or the end of input (which does not).
    private static func readCommands(
        node: ParleyNode,
        out: Output,
        stop: AsyncStream<Void>.Continuation
    ) async throws {
        let input = StandardInputLines()
        while let line = await input.next() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "quit" {
                stop.yield()
                return
            }
            let record = await NodeCommandLine(text).perform(on: node)
            try out.emit(record, text: record.line)
        }
    }
}
