public import ParleyClient
public import ParleyCore

/// A real client whose events are recorded as they arrive (taking them acknowledges messages).
public struct TestClient: Sendable {
    /// The running client.
    public let client: ParleyClient
    /// Every event the client delivered, in order; finished when the client stopped.
    public let events: Mailbox<ParleyClientEvent>

    /// Wraps `client`, whose events the caller appends to `events`.
    public init(client: ParleyClient, events: Mailbox<ParleyClientEvent>) {
        self.client = client
        self.events = events
    }

    /// The messages received so far, in order.
    public var messages: [Message] {
        events.items.compactMap { event in
            if case .message(let message) = event { return message }
            return nil
        }
    }

    /// Waits until `count` messages have arrived in all; returns them in order.
    @discardableResult
    public func waitForMessages(_ count: Int, timeout: Duration = .seconds(30)) async throws -> [Message] {
        try await events.wait(for: "\(count) messages", timeout: timeout) { events, _ in
            let messages = events.compactMap { event -> Message? in
                if case .message(let message) = event { return message }
                return nil
            }
            return messages.count >= count ? messages : nil
        }
    }

    /// Waits for an event, among those that arrived after the first `skip`, that `match` accepts.
    @discardableResult
    public func waitForEvent<T: Sendable>(
        _ description: String,
        after skip: Int = 0,
        timeout: Duration = .seconds(30),
        _ match: @escaping @Sendable (ParleyClientEvent) -> T?
    ) async throws -> T {
        try await events.wait(for: description, timeout: timeout) { events, _ in
            events.dropFirst(skip).lazy.compactMap(match).first
        }
    }

    /// Registers a user and returns its ID.
    public func register(_ name: String, password: String = "secret", requestedUserID: UserID? = nil) async throws
        -> UserID
    {
        try await client.register(UserInfo(userName: name), password: password, requestedUserID: requestedUserID).userID
    }
}

/// Runs `count` real clients of `configuration` for the duration of `body`.
public func withTestClients<T: Sendable>(
    _ count: Int,
    of configuration: ParleyClient.Configuration,
    isolation: isolated (any Actor)? = #isolation,
    _ body: ([TestClient]) async throws -> T
) async throws -> T {
    let clients = (0..<count).map { index in
        TestClient(
            client: ParleyClient(configuration: configuration, logger: makeTestLogger("parley.client.\(index)")),
            events: Mailbox()
        )
    }
    return try await withThrowingTaskGroup(of: Void.self) { group in
        for test in clients {
            group.addTask { try await test.client.run() }
            group.addTask {
                for await event in test.client.events { test.events.append(event) }
                test.events.finish()
            }
        }
        do {
            let result = try await body(clients)
            for test in clients { await test.client.shutdownGracefully() }
            for test in clients {
                // The event stream ends when run() has returned.
                try await test.events.waitUntilFinished("a client to stop")
            }
            try await group.waitForAll()
            return result
        } catch {
            for test in clients { await test.client.shutdownGracefully() }
            try? await group.waitForAll()
            throw error
        }
    }
}

/// Runs one real client of `configuration` for the duration of `body`.
public func withTestClient<T: Sendable>(
    of configuration: ParleyClient.Configuration,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (TestClient) async throws -> T
) async throws -> T {
    try await withTestClients(1, of: configuration) { try await body($0[0]) }
}

/// Expects `body` to fail with a ParleyError of `code`; returns the error.
@discardableResult
public func expectError<T>(
    _ code: ParleyError.Code,
    _ body: () async throws -> T
) async throws -> ParleyError {
    do {
        let value = try await body()
        throw WaitFailure("expected \(code), got \(value)")
    } catch let error as ParleyError {
        guard error.code == code else { throw WaitFailure("expected \(code), got \(error)") }
        return error
    }
}
