public import Logging

/// Runs a ``ParleyClient`` for the duration of `body`: connects, hands the client to `body`,
/// then logs off and shuts it down.
///
/// `body` runs in the caller's isolation (`isolation`), so it may use the caller's state.
///
/// - Throws: the first connection's failure (after the retry policy's attempts), or what
///   `body` throws.
public func withParleyClient<Result: Sendable>(
    configuration: ParleyClient.Configuration,
    logger: Logger = Logger(label: "parley.client"),
    isolation: isolated (any Actor)? = #isolation,
    _ body: (ParleyClient) async throws -> Result
) async throws -> Result {
    let client = ParleyClient(configuration: configuration, logger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await client.run() }
        do {
            let result = try await body(client)
            await client.shutdownGracefully()
            try await group.waitForAll()
            return result
        } catch {
            await client.shutdownGracefully()
            // Prefer the connection failure when body failed because of it.
            try await group.waitForAll()
            throw error
        }
    }
}
