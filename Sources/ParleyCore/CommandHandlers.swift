import Synchronization

/// Command handlers by name, and the handler runs waiting for the `run()` that starts them
/// (the server's, a client's or a node's): handlers never run on an event loop, and the queue
/// is bounded (beyond it a command fails at once).
package final class CommandHandlers: Sendable {
    /// A command handler: gets the command, returns the reply's payload.
    package typealias Handler = @Sendable (Command) async throws -> [UInt8]

    /// One handler run.
    package struct Job: Sendable {
        package let run: @Sendable () async -> Void
    }

    private let handlers = Mutex<[String: Handler]>([:])
    /// The runs to start, for the owner's `run()`; iterate it once.
    package let jobs: AsyncStream<Job>
    private let continuation: AsyncStream<Job>.Continuation

    /// - Parameter capacity: the most runs that may wait to be started.
    package init(capacity: Int) {
        (jobs, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(capacity))
    }

    /// Sets the handler for `name`, replacing the one set before.
    ///
    /// - Throws: ``ParleyError`` with code `invalidRequest` for a name no command can have.
    package func register(_ name: String, _ handler: @escaping Handler) throws(ParleyError) {
        try Command.validate(name: name)
        set(handler, for: name)
    }

    /// Sets (or with nil removes) the handler for `name`.
    package func set(_ handler: Handler?, for name: String) {
        handlers.withLock { $0[name] = handler }
    }

    package func handler(for name: String) -> Handler? {
        handlers.withLock { $0[name] }
    }

    /// The names that have a handler, sorted.
    package var names: [String] {
        handlers.withLock { $0.keys.sorted() }
    }

    /// Queues a handler run; false when the queue is full or the owner stopped.
    package func submit(_ work: @escaping @Sendable () async -> Void) -> Bool {
        if case .enqueued = continuation.yield(Job(run: work)) { return true }
        return false
    }

    /// Queues a run of `handler` for `command`; `completion` gets the reply payload, or the
    /// error the sender gets (``CommandFailure/parleyError(for:)``).
    ///
    /// - Returns: false when the queue is full or the owner stopped.
    package func submit(
        _ handler: @escaping Handler,
        for command: Command,
        then completion: @escaping @Sendable (Result<[UInt8], ParleyError>) -> Void
    ) -> Bool {
        submit {
            do {
                completion(.success(try await handler(command)))
            } catch {
                completion(.failure(CommandFailure.parleyError(for: error)))
            }
        }
    }

    /// Runs each queued job in a child task until ``finish()``, then cancels those still running
    /// and waits for them.
    package func runJobs() async {
        await withDiscardingTaskGroup { group in
            for await job in jobs {
                group.addTask { await job.run() }
            }
            group.cancelAll()
        }
    }

    /// No more jobs: ``runJobs()`` returns once the running ones are done.
    package func finish() {
        continuation.finish()
    }
}
