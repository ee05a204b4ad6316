import ParleyCore
import ParleyLink
import ParleyNode

/// One command read by `parley node` from standard input:
///
///     send USER_ID TEXT         send TEXT to a user, by the best route
///     send-node NODE_ID TEXT    send TEXT to one node
///     whois USER_ID             a user's details (from the server, or the node's cache)
///     find PREFIX               users whose user name starts with PREFIX (server, or cache)
///     find FIELD MATCH VALUE    users whose FIELD matches VALUE (MATCH: exact, prefix, contains)
///     peers                     the peers the node knows
///     status [TEXT]             sets the presence advertised on the LAN (online, away, busy,
///                               ...); without TEXT, shows it
///     command USER_ID NAME [PAYLOAD]       sends a custom command and prints the reply
///     command-node NODE_ID NAME [PAYLOAD]  the same to one node (direct links only)
///     echo-command NAME         answers commands named NAME with their own payload
///     presence STATE [TEXT]     sets the user's presence (online, away, busy) on the server and
///                               the LAN, with an optional status text
///     contact-add USER_ID       adds a user to the contact list (needs the server)
///     contacts                  the contact list with each contact's presence (the cached list
///                               and LAN-derived presence while the server is unreachable)
///
/// (`quit` is handled by the console.) Each command answers with one record: its result, or
/// `{"event":"error","command":...,"message":...}`.
struct NodeCommandLine {
    static let usage =
        "commands: send USER_ID TEXT, send-node NODE_ID TEXT, whois USER_ID, find [FIELD MATCH] VALUE, peers, "
        + "status [TEXT], command USER_ID NAME [PAYLOAD], command-node NODE_ID NAME [PAYLOAD], echo-command NAME, "
        + "presence STATE [TEXT], contact-add USER_ID, contacts, quit"

    let command: String
    let arguments: Substring

    init(_ line: String) {
        let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        command = parts.first.map(String.init) ?? ""
        arguments = parts.count > 1 ? parts[1] : ""
    }

    func perform(on node: ParleyNode) async -> NodeEventRecord {
        do {
            switch command {
            case "send":
                let (user, text) = try userAndText()
                return try await send(text, to: .user(user), node: node)
            case "send-node":
                let (first, text) = try splitFirst()
                guard let nodeID = NodeID(String(first)) else { throw Failure("\"\(first)\" is not a node ID") }
                return try await send(text, to: .node(nodeID), node: node)
            case "whois":
                guard let user = UserID(arguments) else {
                    throw Failure("usage: whois USER_ID")
                }
                let answer = try await node.whois(user)
                return .whois(answer.value, cached: answer.isCached)
            case "find":
                let answer = try await node.findUsers(try query())
                let (result, cached) = (answer.value, answer.isCached)
                return .found(result, cached: cached)
            case "peers":
                return .peers(node.peers())
            case "command", "command-node":
                let parts = arguments.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
                guard parts.count >= 2 else { throw Failure("usage: \(command) ID NAME [PAYLOAD]") }
                let recipient: ParleyNode.Recipient
                if command == "command" {
                    guard let user = UserID(parts[0]) else { throw Failure("\"\(parts[0])\" is not a user ID") }
                    recipient = .user(user)
                } else {
                    guard let nodeID = NodeID(String(parts[0])) else {
                        throw Failure("\"\(parts[0])\" is not a node ID")
                    }
                    recipient = .node(nodeID)
                }
                let name = String(parts[1])
                let payload = parts.count > 2 ? Array(parts[2].utf8) : []
                let result = try await node.sendCommand(name, payload: payload, to: recipient)
                return .commandReply(name, result)
            case "echo-command":
                let name = String(arguments)
                try node.handleCommands(named: name) { $0.payload }
                return .handling(name)
            case "status":
                // Without text: the status advertised now.
                if !arguments.isEmpty { try await node.setStatus(String(arguments)) }
                return .status(node.status)
            case "presence":
                let parts = arguments.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
                guard let first = parts.first, let state = PresenceState(rawValue: String(first)) else {
                    throw Failure("usage: presence online|away|busy [TEXT]")
                }
                try await node.setPresence(state, text: parts.count > 1 ? String(parts[1]) : "")
                return .status(node.status)
            case "contact-add":
                guard let user = UserID(arguments) else { throw Failure("usage: contact-add USER_ID") }
                let contact = try await node.addContact(user)
                return .contact(contact, presence: node.contactPresences()[user], cached: false)
            case "contacts":
                let answer = try await node.contacts()
                let (contacts, cached) = (answer.value, answer.isCached)
                let presences = node.contactPresences()
                return .contacts(
                    contacts.map { .contact($0, presence: presences[$0.userID], cached: nil) }, cached: cached)
            default:
                throw Failure("unknown command \"\(command)\"; \(Self.usage)")
            }
        } catch let failure as Failure {
            return .error(failure.message, command: command)
        } catch let error as ParleyError {
            return .error(ErrorText.describe(error), command: command)
        } catch {
            return .error(ErrorText.describe(error), command: command)
        }
    }

    private func send(_ text: Substring, to recipient: ParleyNode.Recipient, node: ParleyNode) async throws
        -> NodeEventRecord
    {
        let result = try await node.send(.text(String(text)), to: recipient, id: .random())
        return .sent(result, to: recipient)
    }

    private func userAndText() throws -> (UserID, Substring) {
        let (first, text) = try splitFirst()
        guard let user = UserID(first) else { throw Failure("\"\(first)\" is not a user ID") }
        return (user, text)
    }

    /// "PREFIX" (of the user name) or "FIELD MATCH VALUE".
    private func query() throws -> UserQuery {
        let parts = arguments.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true).map(String.init)
        switch parts.count {
        case 1:
            return UserQuery(filters: [.init(.userName, .prefix, parts[0])])
        case 3:
            guard let field = UserField(rawValue: parts[0]) else {
                throw Failure(
                    "unknown field \"\(parts[0])\"; fields: \(UserField.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            guard let match = UserQuery.Match(rawValue: parts[1]) else {
                throw Failure("unknown match \"\(parts[1])\"; use exact, prefix or contains")
            }
            return UserQuery(filters: [.init(field, match, parts[2])])
        default:
            throw Failure("usage: find PREFIX, or find FIELD MATCH VALUE")
        }
    }

    /// "ID TEXT..." -> ("ID", "TEXT...").
    private func splitFirst() throws -> (Substring, Substring) {
        let parts = arguments.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, !parts[1].isEmpty else { throw Failure("usage: \(command) ID TEXT") }
        return (parts[0], parts[1])
    }

    /// A mistake in the command line itself.
    private struct Failure: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }
}
