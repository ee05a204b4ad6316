package import ParleyCore
import ParleySQLite

/// The user directory's record of one user: what others may see, plus the password hash.
package struct StoredUser: Sendable, Hashable {
    /// The directory fields. ``UserInfo/isOnline`` is always false: the store does not know.
    package var info: UserInfo
    /// The hash the server computed at registration or the last password change.
    package var passwordHash: String

    package init(info: UserInfo, passwordHash: String) {
        self.info = info
        self.passwordHash = passwordHash
    }
}
