import Foundation
import Logging
import ParleyAvahi
import ParleyCore
import ParleyLink
import ParleyNode
import ServiceLifecycle

/// The console of `parley node`: prints the node's events and carries out the commands read
/// from standard input. `parley node` runs it in a `ServiceGroup` between the node's discovery
/// and the node (`[discovery, console, node]`): graceful shutdown (SIGTERM, SIGINT) stops the node
/// first, whose last events the console prints before it ends, then discovery. `quit` stops the
/// node, which ends the group the same way.
///
/// The end of standard input is not a request to stop: a script or test may close its end of
/// the pipe and keep the node running.
struct NodeConsole: Service {
    let node: ParleyNode
    let name: String
    let out: Output
    let readsCommands: Bool

    func run() async throws {
        let (node, out, readsCommands) = (self.node, self.out, self.readsCommands)
        let port = try await node.listeningPort
        let started = NodeEventRecord.started(nodeID: node.nodeID, name: name, port: port)
        try out.emit(started, text: started.line)
        try await withThrowingTaskGroup(of: Void.self) { group in
            if readsCommands {
                group.addTask { try await Self.readCommands(node: node, out: out) }
            }
            // The line is written before the next event is asked for: that confirms the message
            // to the node, which otherwise hands it over again after a crash.
            var events = node.events.makeAsyncIterator()
            while let event = await events.next() {
                var record = NodeEventRecord(event)
                if events.isRedelivery { record.redelivered = true }
                try out.emit(record, text: record.line)
            }
            // The node stopped and its last events are printed: the command reader (blocked on
            // input) is not needed any more.
            group.cancelAll()
        }
        try out.emit(NodeEventRecord.stopped, text: NodeEventRecord.stopped.line)
        // The group ends its services in reverse order and takes a service that ends before its
        // turn for a failure: the console waits for its turn, which comes once the node ended.
        try? await gracefulShutdown()
    }

    /// Reads commands until `quit` (which stops the node) or the end of input (which does not).
    private static func readCommands(node: ParleyNode, out: Output) async throws {
        let input = StandardInputLines()
        while let line = await input.next() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "quit" {
                await node.shutdown()
                return
            }
            let record = await NodeCommandLine(text).perform(on: node)
            try out.emit(record, text: record.line)
        }
    }
}
