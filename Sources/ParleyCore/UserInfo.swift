public import struct Foundation.Date

/// What the directory knows about a user.
public struct UserInfo: Hashable, Sendable, Codable {
    public var userID: UserID
    /// Required: 1 to ``UserInfo/maximumFieldLength`` characters.
    public var userName: String
    public var firstName: String
    public var lastName: String
    public var organization: String
    public var department: String
    public var application: String
    /// Whether the user has a logged-on session right now (as the server saw it when it answered).
    public var isOnline: Bool
    public var registeredAt: Date?
    /// The ID of the node the user last declared at logon: lowercase base32 (RFC 4648, no
    /// padding) of SHA-256(``nodePublicKey``). Nil while the user has declared no node.
    public var nodeID: String?
    /// SubjectPublicKeyInfo DER of that node's P-256 key. The server vouches that this key belongs
    /// to whoever logged on as this user; a peer claiming to be this user must prove it holds it.
    public var nodePublicKey: [UInt8]?
    /// "host:port" addresses where that node accepts direct links.
    public var directAddresses: [String]
    /// The user's consent to direct links with that node.
    public var allowsDirectLinks: Bool
    /// When the server recorded the node.
    public var nodeKeyUpdatedAt: Date?

    /// The longest value any text field may have, in characters.
    public static let maximumFieldLength = 64
    /// The longest value any text field may have, in UTF-8 bytes: one character can be many
    /// bytes (a letter with a thousand combining marks), so characters alone bound nothing.
    /// 64 Unicode scalars always fit.
    public static let maximumFieldBytes = 256

    public init(
        userID: UserID = 0,
        userName: String,
        firstName: String = "",
        lastName: String = "",
        organization: String = "",
        department: String = "",
        application: String = "",
        isOnline: Bool = false,
        registeredAt: Date? = nil,
        nodeID: String? = nil,
        nodePublicKey: [UInt8]? = nil,
        directAddresses: [String] = [],
        allowsDirectLinks: Bool = false,
        nodeKeyUpdatedAt: Date? = nil
    ) {
        self.userID = userID
        self.userName = userName
        self.firstName = firstName
        self.lastName = lastName
        self.organization = organization
        self.department = department
        self.application = application
        self.isOnline = isOnline
        self.registeredAt = registeredAt
        self.nodeID = nodeID
        self.nodePublicKey = nodePublicKey
        self.directAddresses = directAddresses
        self.allowsDirectLinks = allowsDirectLinks
        self.nodeKeyUpdatedAt = nodeKeyUpdatedAt
    }

    /// The value of one text field.
    public subscript(field: UserField) -> String {
        switch field {
        case .userName: userName
        case .firstName: firstName
        case .lastName: lastName
        case .organization: organization
        case .department: department
        case .application: application
        }
    }

    /// Trims the text fields and checks them: a user name is required, no field is longer than
    /// ``maximumFieldLength`` characters or ``maximumFieldBytes`` bytes.
    ///
    /// - Returns: the normalized info.
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidRequest``.
    public func validated() throws(ParleyError) -> UserInfo {
        var copy = self
        copy.userName = userName.trimmingWhitespace()
        copy.firstName = firstName.trimmingWhitespace()
        copy.lastName = lastName.trimmingWhitespace()
        copy.organization = organization.trimmingWhitespace()
        copy.department = department.trimmingWhitespace()
        copy.application = application.trimmingWhitespace()
        guard !copy.userName.isEmpty else {
            throw ParleyError(code: .invalidRequest, message: "a user name is required")
        }
        for field in UserField.allCases {
            // Bytes first: counting the characters of a huge value is itself costly.
            guard copy[field].utf8.count <= Self.maximumFieldBytes else {
                throw ParleyError(
                    code: .invalidRequest,
                    message: "\(field) is longer than \(Self.maximumFieldBytes) bytes (UTF-8)"
                )
            }
            guard copy[field].count <= Self.maximumFieldLength else {
                throw ParleyError(
                    code: .invalidRequest,
                    message: "\(field) is longer than \(Self.maximumFieldLength) characters"
                )
            }
        }
        return copy
    }
}

/// The searchable text fields of ``UserInfo``.
public enum UserField: String, CaseIterable, Hashable, Sendable, Codable, CustomStringConvertible {
    case userName = "user-name"
    case firstName = "first-name"
    case lastName = "last-name"
    case organization
    case department
    case application

    public var description: String { rawValue }
}

extension StringProtocol {
    /// Drops leading and trailing white space (any Unicode white space), as registration does.
    package func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice.removeFirst() }
        while let last = slice.last, last.isWhitespace { slice.removeLast() }
        return String(slice)
    }
}
