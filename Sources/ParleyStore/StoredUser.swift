public import ParleyCore

/// The user directory's record of one user: what others may see, plus the password hash.
public struct StoredUser: Sendable, Hashable {
    /// The directory fields. ``UserInfo/isOnline`` is always false: the store does not know.
    public var info: UserInfo
    /// The hash the server computed at registration or the last password change.
    public var passwordHash: String

    public init(info: UserInfo, passwordHash: String) {
        self.info = info
        self.passwordHash = passwordHash
    }
}
