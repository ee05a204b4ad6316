public import Foundation
import Logging
import NIOCore
import NIOPosix
public import ParleyCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// One request on the admin socket (docs/ADMIN.md): a JSON object on one line, answered by one
/// ``AdminReply`` line.
public struct AdminRequest: Sendable, Hashable, Codable {
    /// users, sessions, counts, kick, delete-user, reserve-id, release-id, reserved-ids,
    /// last-seen, contacts, add-contact, remove-contact, broadcast, files or delete-file.
    public var command: String
    /// The user the command is about.
    public var user: UserID?
    /// The contact to add or remove.
    public var contact: UserID?
    /// The session to kick (``ServerSession/id``).
    public var session: UInt64?
    /// Why a session is kicked or a user deleted; the client is told.
    public var reason: String?
    /// users: the sort field.
    public var sort: ParleyServer.UserOrder?
    /// users: largest first.
    public var descending: Bool?
    /// users: how many to skip.
    public var offset: Int?
    /// users: how many at most.
    public var limit: Int?
    /// add-contact: a custom display name.
    public var name: String?
    /// broadcast: the notice's text.
    public var text: String?
    /// delete-file: the transfer's ID (with ``user``, its sender).
    public var transfer: TransferID?

    /// A request with no arguments yet.
    public init(command: String) {
        self.command = command
    }

    /// How dates travel: ISO 8601, UTC, with milliseconds.
    private static let dateStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// The JSON encoding both ends use (ISO 8601 dates with milliseconds).
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(dateStyle))
        }
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// The JSON decoding both ends use (ISO 8601 dates with milliseconds).
    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            do {
                return try dateStyle.parse(text)
            } catch {
                throw DecodingError.dataCorruptedError(
                    in: container, debugDescription: "not an ISO 8601 date with milliseconds: \(text)")
            }
        }
        return decoder
    }
}

/// The answer to an ``AdminRequest``: `{"ok":true,"result":...}` or
/// `{"ok":false,"error":{"code":N,"name":"...","message":"..."}}`.
public struct AdminReply<Result: Codable & Sendable>: Sendable, Codable {
    /// Whether the request succeeded.
    public var ok: Bool
    /// The result of a successful request.
    public var result: Result?
    /// Why a request failed.
    public var error: Failure?

    /// A failed request.
    public struct Failure: Sendable, Hashable, Codable {
        /// The ``/ParleyCore/ParleyError/Code/wireValue``.
        public var code: UInt32
        /// The code's name ("user-not-found").
        public var name: String
        /// What went wrong, for people.
        public var message: String

        /// The error as a ``/ParleyCore/ParleyError``.
        public var parleyError: ParleyError {
            ParleyError(code: .init(wireValue: code), message: message)
        }
    }

    /// A success.
    public init(result: Result) {
        self.ok = true
        self.result = result
    }

    /// A failure.
    public init(error: ParleyError) {
        self.ok = false
        self.error = Failure(code: error.code.wireValue, name: error.code.name, message: error.message)
    }

    /// The result, or the error thrown.
    public func get() throws(ParleyError) -> Result {
        if ok, let result { return result }
        throw error?.parleyError ?? ParleyError(code: .internalError, message: "the admin socket answered nothing")
    }
}

/// What a command that changes something answers: whether it changed anything (a kick found the
/// session, a release found the reservation).
public struct AdminDone: Sendable, Hashable, Codable {
    /// Whether the command changed anything.
    public var changed: Bool

    /// Makes an answer.
    public init(changed: Bool) { self.changed = changed }
}

/// Answers admin requests with the ``ParleyServer`` admin API.
struct AdminRequestHandler: Sendable {
    let server: ParleyServer

    /// The answer line (without its newline) to one request line.
    func answer(_ line: [UInt8]) async -> [UInt8] {
        let request: AdminRequest
        do {
            request = try AdminRequest.makeDecoder().decode(AdminRequest.self, from: Data(line))
        } catch {
            return Self.encode(
                AdminReply<AdminDone>(
                    error: ParleyError(code: .invalidRequest, message: "not an admin request: \(error)")))
        }
        do throws(ParleyError) {
            return try await perform(request)
        } catch {
            return Self.encode(AdminReply<AdminDone>(error: error))
        }
    }

    private func perform(_ request: AdminRequest) async throws(ParleyError) -> [UInt8] {
        func required(_ value: UserID?, _ field: String) throws(ParleyError) -> UserID {
            guard let value else {
                throw ParleyError(code: .invalidRequest, message: "\(request.command) needs \"\(field)\"")
            }
            return value
        }
        let reason = request.reason ?? "closed by the server's admin"
        switch request.command {
        case "users":
            return Self.encode(
                AdminReply(
                    result: try await server.users(
                        sortedBy: request.sort ?? .id,
                        descending: request.descending ?? false,
                        offset: request.offset ?? 0,
                        limit: request.limit ?? 100
                    )))
        case "sessions":
            return Self.encode(AdminReply(result: try server.sessions()))
        case "counts":
            return Self.encode(AdminReply(result: try await server.counts()))
        case "kick":
            let kicked: Bool
            if let session = request.session {
                kicked = try server.kick(session: session, reason: reason)
            } else {
                kicked = try server.kick(user: try required(request.user, "user"), reason: reason)
            }
            return Self.encode(AdminReply(result: AdminDone(changed: kicked)))
        case "delete-user":
            try await server.deleteUser(
                try required(request.user, "user"), reason: request.reason ?? "the account was deleted")
            return Self.encode(AdminReply(result: AdminDone(changed: true)))
        case "reserve-id":
            try await server.reserveUserID(try required(request.user, "user"))
            return Self.encode(AdminReply(result: AdminDone(changed: true)))
        case "release-id":
            let released = try await server.releaseUserID(try required(request.user, "user"))
            return Self.encode(AdminReply(result: AdminDone(changed: released)))
        case "reserved-ids":
            return Self.encode(AdminReply(result: try await server.reservedUserIDs()))
        case "last-seen":
            return Self.encode(AdminReply(result: try await server.lastSeen(try required(request.user, "user"))))
        case "contacts":
            return Self.encode(AdminReply(result: try await server.contacts(of: try required(request.user, "user"))))
        case "add-contact":
            let added = try await server.addContact(
                try required(request.contact, "contact"),
                to: try required(request.user, "user"),
                displayName: request.name.map(ContactDisplayName.custom) ?? .userName
            )
            return Self.encode(AdminReply(result: added))
        case "remove-contact":
            try await server.removeContact(
                try required(request.contact, "contact"), from: try required(request.user, "user"))
            return Self.encode(AdminReply(result: AdminDone(changed: true)))
        case "broadcast":
            guard let text = request.text, !text.isEmpty else {
                throw ParleyError(code: .invalidRequest, message: "broadcast needs \"text\"")
            }
            // The answer is how many users were online to get it.
            return Self.encode(AdminReply(result: try await server.broadcast(.text(text)).count))
        case "files":
            return Self.encode(AdminReply(result: try await server.heldFiles()))
        case "delete-file":
            guard let transfer = request.transfer else {
                throw ParleyError(code: .invalidRequest, message: "delete-file needs \"transfer\"")
            }
            let deleted = try await server.deleteHeldFile(
                sender: try required(request.user, "user"), id: transfer,
                reason: request.reason ?? "deleted by the server's admin")
            return Self.encode(AdminReply(result: AdminDone(changed: deleted)))
        default:
            throw ParleyError(code: .unknownRequest, message: "unknown admin command \"\(request.command)\"")
        }
    }

    static func encode<T: Codable & Sendable>(_ reply: AdminReply<T>) -> [UInt8] {
        do {
            return Array(try AdminRequest.makeEncoder().encode(reply))
        } catch {
            // Only a result that cannot be encoded gets here (a date out of range).
            return Array(
                #"{"error":{"code":50,"message":"the answer could not be encoded","name":"internal-error"},"ok":false}"#
                    .utf8)
        }
    }
}

/// Closes a file descriptor (out here, where `close` is the C function and not
/// ``AdminListener/close()``).
private func closeDescriptor(_ descriptor: Int32) {
    _ = close(descriptor)
}

/// The layout of Linux's `struct ucred`, which SO_PEERCRED fills in.
private struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// The server's admin socket: a Unix socket, mode 0600, that only the server's own user and
/// root may talk to (SO_PEERCRED is checked on every connection, so a wrong mode set later
/// does not open it up).
final class AdminListener: Sendable {
    /// An accepted connection and the user ID of the process on the other end.
    struct Accepted: Sendable {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        let peerUID: UInt32?
    }

    let path: String
    private let channel: NIOAsyncChannel<Accepted, Never>
    private let logger: Logger
    private let ownerUID = UInt32(getuid())

    /// The longest request line taken.
    static let maximumLine = 64 * 1024

    private init(path: String, channel: NIOAsyncChannel<Accepted, Never>, logger: Logger) {
        self.path = path
        self.channel = channel
        self.logger = logger
    }

    /// Binds the socket at `path`: a stale socket there is removed, any other kind of file is
    /// an error (never replaced), and the new socket gets mode 0600.
    static func bind(path: String, group: any EventLoopGroup, logger: Logger) async throws(ParleyError) -> AdminListener
    {
        guard !isServed(path) else {
            throw ParleyError(
                code: .internalError,
                message: "admin socket \(path): another server listens there (is this data directory in use?)")
        }
        do {
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 16)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { child in
                    AdminListener.peerUID(of: child).flatMapThrowing { uid in
                        Accepted(
                            channel: try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child),
                            peerUID: uid
                        )
                    }
                }
            guard chmod(path, 0o600) == 0 else {
                let reason = String(cString: strerror(errno))
                try? await channel.channel.close()
                throw ParleyError(code: .internalError, message: "admin socket \(path): chmod 0600 failed: \(reason)")
            }
            logger.info("admin socket listening", metadata: ["path": "\(path)"])
            return AdminListener(path: path, channel: channel, logger: logger)
        } catch let error as ParleyError {
            throw error
        } catch {
            throw ParleyError(
                code: .internalError,
                message: "admin socket \(path): \(error) (a file that is not a socket is never replaced; "
                    + "set another path or turn the admin socket off)",
                cause: error
            )
        }
    }

    /// Whether a process accepts connections on the Unix socket at `path` (then it is not stale).
    private static func isServed(_ path: String) -> Bool {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { closeDescriptor(descriptor) }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return connected == 0
    }

    /// The user ID of the peer process, or nil when the kernel does not say.
    private static func peerUID(of channel: any Channel) -> EventLoopFuture<UInt32?> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return credentials.map { Optional($0.uid) }.recover { _ in nil }
    }

    /// Serves connections until ``close()`` or cancellation, one task each.
    func serve(_ handler: AdminRequestHandler) async {
        do {
            try await channel.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await accepted in inbound {
                        group.addTask { await self.converse(accepted, handler) }
                    }
                }
            }
        } catch {
            logger.debug("the admin socket stopped", metadata: ["error": "\(error)"])
        }
    }

    /// One admin connection: request lines in, answer lines out, in order.
    private func converse(_ accepted: Accepted, _ handler: AdminRequestHandler) async {
        do {
            try await accepted.channel.executeThenClose { inbound, outbound in
                guard let uid = accepted.peerUID, uid == self.ownerUID || uid == 0 else {
                    self.logger.debug(
                        "refused an admin connection from another user",
                        metadata: ["peer.uid": "\(accepted.peerUID.map(String.init) ?? "unknown")"])
                    let refusal = AdminReply<AdminDone>(
                        error: ParleyError(
                            code: .invalidCredentials,
                            message: "permission denied: only the server's user and root may use the admin socket"))
                    try await outbound.write(ByteBuffer(bytes: AdminRequestHandler.encode(refusal) + [10]))
                    return
                }
                var buffer = ByteBuffer()
                for try await chunk in inbound {
                    var chunk = chunk
                    buffer.writeBuffer(&chunk)
                    while let length = buffer.withUnsafeReadableBytes({ $0.firstIndex(of: UInt8(ascii: "\n")) }) {
                        let line = buffer.readBytes(length: length) ?? []
                        buffer.moveReaderIndex(forwardBy: 1)
                        let answer = await handler.answer(line)
                        try await outbound.write(ByteBuffer(bytes: answer + [10]))
                    }
                    guard buffer.readableBytes <= Self.maximumLine else {
                        let tooLong = AdminReply<AdminDone>(
                            error: ParleyError(
                                code: .invalidRequest,
                                message: "a request line is longer than \(Self.maximumLine) bytes"))
                        try await outbound.write(ByteBuffer(bytes: AdminRequestHandler.encode(tooLong) + [10]))
                        return
                    }
                    buffer.discardReadBytes()
                }
            }
        } catch {
            logger.debug("an admin connection failed", metadata: ["error": "\(error)"])
        }
    }

    /// Stops listening and removes the socket file.
    func close() async {
        try? await channel.channel.close()
        if unlink(path) != 0, errno != ENOENT {
            logger.warning("cannot remove the admin socket", metadata: ["path": "\(path)"])
        }
    }
}
