public import ParleyCore

/// The server application's command handlers, by name (docs/PROTOCOL.md section 24).
///
/// A user's command to the server (recipient ``/ParleyCore/UserID/server``) runs the handler
/// registered for its name; with none, the sender gets NO_HANDLER. Handlers run in child tasks
/// of ``ParleyServer/run()``, never on an event loop, so they may block or await as long as they
/// like: the sender stops waiting at its timeout, and a reply that comes later is dropped.
///
/// ```swift
/// server.commands.register("time") { command in
///     Array(Date().formatted().utf8)
/// }
/// ```
///
/// A handler's return value is the reply's payload. Throwing ``/ParleyCore/CommandFailure``
/// fails the command with the application's code and text (COMMAND_FAILED); any other error
/// fails it with code 0 and the error's description.
public final class ServerCommands: Sendable {
    /// A command handler: gets the command, returns the reply's payload.
    public typealias Handler = @Sendable (Command) async throws -> [UInt8]

    /// The handlers and the runs waiting for ``ParleyServer/run()``.
    let table = CommandHandlers(capacity: 1024)

    init() {}

    /// Registers `handler` for commands named `name`, replacing the one registered before.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidRequest` for a name no command
    ///   can have (``/ParleyCore/Command/validate(name:)``).
    public func register(_ name: String, _ handler: @escaping Handler) throws(ParleyError) {
        try table.register(name, handler)
    }

    /// Removes the handler for `name`; later commands of that name get NO_HANDLER.
    public func remove(_ name: String) {
        table.set(nil, for: name)
    }

    /// The names that have a handler, sorted.
    public var names: [String] { table.names }
}
