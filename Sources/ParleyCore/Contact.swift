public import struct Foundation.Date

/// How a contact's name is shown: one of the directory's fields, or a name the owner chose.
public enum ContactDisplayName: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The contact's user name.
    case userName
    /// The contact's first name.
    case firstName
    /// The contact's last name.
    case lastName
    /// First and last name, separated by a space.
    case fullName
    /// A name chosen by the owner of the list (1 to ``UserInfo/maximumFieldLength`` characters).
    case custom(String)

    /// The name to show for a contact whose directory record is `info`. A chosen field that is
    /// empty falls back to the user name, so a contact always has a name.
    public func resolve(for info: UserInfo) -> String {
        let name: String
        switch self {
        case .userName: name = info.userName
        case .firstName: name = info.firstName
        case .lastName: name = info.lastName
        case .fullName: name = [info.firstName, info.lastName].filter { !$0.isEmpty }.joined(separator: " ")
        case .custom(let custom): name = custom
        }
        return name.isEmpty ? info.userName : name
    }

    /// The number that stands for the rule on the wire and in the store (docs/PROTOCOL.md,
    /// "Contacts").
    public var wireValue: UInt32 {
        switch self {
        case .userName: 0
        case .firstName: 1
        case .lastName: 2
        case .fullName: 3
        case .custom: 4
        }
    }

    /// The rule a wire value and custom name stand for; nil for a value this version does not know.
    public init?(wireValue: UInt32, customName: String) {
        switch wireValue {
        case 0: self = .userName
        case 1: self = .firstName
        case 2: self = .lastName
        case 3: self = .fullName
        case 4: self = .custom(customName)
        default: return nil
        }
    }

    /// The custom name, or "" for the other rules.
    public var customName: String {
        if case .custom(let name) = self { name } else { "" }
    }

    public var description: String {
        switch self {
        case .userName: "user-name"
        case .firstName: "first-name"
        case .lastName: "last-name"
        case .fullName: "full-name"
        case .custom(let name): "custom(\(name))"
        }
    }

    /// Checks a rule before it is stored.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidRequest`` for a custom name
    ///   that is empty, longer than ``UserInfo/maximumFieldLength`` characters or
    ///   ``UserInfo/maximumFieldBytes`` bytes.
    public func validate() throws(ParleyError) {
        guard case .custom(let name) = self else { return }
        guard !name.isEmpty, name.count <= UserInfo.maximumFieldLength,
            name.utf8.count <= UserInfo.maximumFieldBytes
        else {
            throw ParleyError(
                code: .invalidRequest,
                message: "a custom contact name must be 1 to \(UserInfo.maximumFieldLength) characters"
                    + " and at most \(UserInfo.maximumFieldBytes) bytes"
            )
        }
    }
}

/// One entry of a user's contact list.
public struct Contact: Hashable, Sendable, Codable {
    /// The contact's user ID.
    public var userID: UserID
    /// How its name is shown.
    public var displayName: ContactDisplayName
    /// When it was added to the list.
    public var addedAt: Date
    /// The contact's directory record when the list was fetched.
    public var info: UserInfo

    public init(userID: UserID, displayName: ContactDisplayName, addedAt: Date, info: UserInfo) {
        self.userID = userID
        self.displayName = displayName
        self.addedAt = addedAt
        self.info = info
    }

    /// The name to show, resolved by ``displayName``.
    public var name: String { displayName.resolve(for: info) }
}
