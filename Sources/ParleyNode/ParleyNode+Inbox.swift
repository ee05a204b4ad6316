import Dispatch
import Foundation
import Logging
import ParleyCore
import ParleyLink
import ParleyNodeStore

/// The node's registry, reached only through this facade: every call runs on one serial
/// dispatch queue of its own, off Swift's cooperative pool (SQLite blocks the calling thread, and
/// on a 2-core machine two blocked pool threads stall every task), in the order submitted. A
/// body is one unit of work: what must be atomic is one registry call (one transaction), never
/// a sequence of calls with an `await` between them.
final class RegistryAccess: Sendable {
    private let registry: NodeRegistry
    private let queue = DispatchQueue(label: "parley.node.registry")

    init(_ registry: NodeRegistry) {
        self.registry = registry
    }

    /// Runs `body` with the registry on the registry's queue and returns its result.
    @discardableResult
    func run<T: Sendable>(
        _ body: @escaping @Sendable (NodeRegistry) throws(ParleyError) -> T
    ) async throws(ParleyError) -> T {
        let registry = self.registry
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<T, ParleyError>, Never>) in
            queue.async {
                do throws(ParleyError) {
                    continuation.resume(returning: .success(try body(registry)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Runs `body` on the registry's queue after what was submitted before, without waiting for
    /// it: writes whose failure is only reported (`failed` is called on the queue).
    func submit(
        _ body: @escaping @Sendable (NodeRegistry) throws(ParleyError) -> Void,
        failed: @escaping @Sendable (ParleyError) -> Void
    ) {
        let registry = self.registry
        queue.async {
            do throws(ParleyError) {
                try body(registry)
            } catch {
                failed(error)
            }
        }
    }

    /// Waits until everything submitted before has run (the node's stop: a history entry
    /// submitted by the last send is written before the process may exit).
    func drain() async {
        _ = try? await run { _ throws(ParleyError) in }
    }

    /// Runs `body` on the registry's queue and waits for it, blocking the calling thread: only for
    /// the node's set-up, before any of its tasks runs.
    func runBlocking<T>(_ body: (NodeRegistry) throws(ParleyError) -> T) throws(ParleyError) -> T {
        let result = queue.sync { () -> Result<T, ParleyError> in
            do throws(ParleyError) {
                return .success(try body(registry))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}

extension ParleyNode {
    /// Records a received message as seen and stores it in the node inbox (one transaction),
    /// then hands it to ``events``, unless it was received before (by any route, also before a
    /// restart). Returns once the message is durable: only then may it be acknowledged.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` when a direct message finds the event buffer full
    ///   (it is not acknowledged and comes again) or the registry cannot record it.
    func deliver(_ message: Message, sender: MessageOrigin, from node: NodeID?, route: Route) async throws(ParleyError)
    {
        let (events, logger, user) = (eventQueue, self.logger, ownUser)
        try await registry.run { registry throws(ParleyError) in
            // A direct message is refused unacknowledged while the reader lags (its sender tries
            // again); one from the server was taken only once there was room (consume).
            if route != .server, !events.hasRoom {
                if try registry.hasSeen(sender: sender, messageID: message.id) { return }
                throw ParleyError(code: .slowConsumer, message: "the node's event buffer is full")
            }
            let stored = try registry.receive(
                message, sender: sender, fromNode: node, route: route.rawValue, at: Date())
            guard let sequence = stored else {
                logger.debug("dropping a duplicate", metadata: ["message.id": "\(message.id)", "sender": "\(sender)"])
                return
            }
            // history: received
            Self.recordHistory(
                [Self.receivedEntry(message, recipient: user, route: route)], in: registry, logger: logger)
            // Offered on this queue, right after the commit: events come in inbox order.
            events.offer(.messageReceived(message, from: node, route: route), inboxSequence: sequence, pastLimit: true)
        }
    }

    /// Hands the messages a previous run acknowledged but its application did not confirm to
    /// ``events`` again, oldest first, before anything else.
    static func replayInbox(_ registry: NodeRegistry, into events: EventQueue) throws(ParleyError) -> Int {
        let entries = try registry.inbox()
        for entry in entries {
            let route = Route(rawValue: entry.route) ?? (entry.fromNode == nil ? .server : .direct)
            events.offer(
                .messageReceived(entry.message, from: entry.fromNode, route: route), inboxSequence: entry.sequence,
                isRedelivery: true, pastLimit: true)
        }
        return entries.count
    }

    /// What ``Events`` calls when the application has taken a message: removes it from the
    /// node inbox. On failure it stays there, and comes again after a restart.
    static func inboxConfirmer(_ registry: RegistryAccess, logger: Logger) -> @Sendable (Int64) async -> Void {
        { sequence in
            do throws(ParleyError) {
                _ = try await registry.run { registry throws(ParleyError) in
                    try registry.removeFromInbox(sequence: sequence)
                }
            } catch {
                logger.warning(
                    "cannot confirm a message taken by the application; it is delivered again after a restart",
                    metadata: ["inbox.sequence": "\(sequence)", "error": "\(error)"])
            }
        }
    }
}
