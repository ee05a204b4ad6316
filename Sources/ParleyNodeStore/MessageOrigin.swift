package import ParleyCore
import ParleySQLite

/// Whom a node remembers a received message under (its seen IDs and its inbox): the sending
/// user, or, for a node without a user (peer-to-peer mode), the sending node. A message that
/// comes by two routes from the same user is the same message.
package enum MessageOrigin: Sendable, Hashable, CustomStringConvertible {
    case user(UserID)
    /// A node without a user.
    case node(NodeID)

    /// The stored form: "user:<ID>" or "node:<node ID>".
    package var key: String {
        switch self {
        case .user(let user): "user:\(user.rawValue)"
        case .node(let node): "node:\(node)"
        }
    }

    /// The origin a stored key names; nil for anything else.
    package init?(key: String) {
        if let user = key.wholeMatch(of: /user:([0-9]{1,10})/).flatMap({ UInt32($0.1) }) {
            self = .user(UserID(user))
        } else if key.hasPrefix("node:"), let node = NodeID(String(key.dropFirst(5))) {
            self = .node(node)
        } else {
            return nil
        }
    }

    package var description: String {
        switch self {
        case .user(let user): "user \(user)"
        case .node(let node): "node \(node)"
        }
    }
}
