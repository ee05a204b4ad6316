public import ParleyCore

/// Server-side application logic: receives the messages users send to ``/ParleyCore/UserID/server``.
///
/// The server calls ``receive(_:from:)`` one message at a time, in arrival order, from its
/// own `run()` task; a slow application delays only other messages to the application.
public protocol ParleyServerApplication: Sendable {
    /// A user sent `message` to the server's address. Use `server` to answer (``ParleyServer/send(_:to:id:)``).
    func receive(_ message: Message, from server: ParleyServer) async
}

/// The bounded queue between connection handlers and the application.
final class ApplicationInbox: Sendable {
    let stream: AsyncStream<Message>
    private let continuation: AsyncStream<Message>.Continuation
    let isAvailable: Bool

    /// - Parameter capacity: messages waiting for the application at most; beyond that the
    ///   sender gets a failure for the server recipient instead of an unbounded queue.
    init(isAvailable: Bool, capacity: Int) {
        (stream, continuation) = AsyncStream.makeStream(of: Message.self, bufferingPolicy: .bufferingOldest(capacity))
        self.isAvailable = isAvailable
    }

    /// Hands a message to the application; the per-recipient result for the server address.
    func offer(_ message: Message) -> DeliveryResult.Status {
        guard isAvailable else {
            return .failed(
                ParleyError(code: .serverApplicationUnavailable, message: "no server application takes messages here")
            )
        }
        switch continuation.yield(message) {
        case .enqueued:
            return .acceptedByServer
        case .dropped, .terminated:
            return .failed(
                ParleyError(
                    code: .serverApplicationUnavailable, message: "the server application is overloaded or stopped")
            )
        @unknown default:
            return .failed(
                ParleyError(code: .serverApplicationUnavailable, message: "the server application is unavailable"))
        }
    }

    func finish() { continuation.finish() }
}
