import Foundation
import GRDB
package import ParleyCore
package import ParleySQLite

/// The server's durable state in one SQLite file: the user directory and the store-and-forward
/// message queue.
///
/// The store owns its schema (named, append-only migrations run when it opens) and exposes domain
/// methods only. Every method is synchronous and blocks until SQLite answers, so the server calls
/// them off its event loops. Writes are serialized by one writer connection; reads run
/// concurrently on a small pool of reader connections (SQLite's WAL mode).
///
/// Every failure is a ``ParleyError``: SQLite errors, and rows that cannot be decoded, have code
/// ``ParleyError/Code/storageError``.
package final class ServerStore: Sendable {
    /// How the store uses SQLite.
    package struct Configuration: Sendable {
        /// How much of a committed transaction survives a crash.
        package typealias Durability = SQLiteDurability

        /// SQLite's synchronous mode. Default ``Durability/normal``.
        package var durability: Durability
        /// How long the store remembers an acknowledged message's (recipient, sender, message ID)
        /// to reject resends as duplicates. Default 7 days.
        package var deduplicationWindow: Duration

        package init(durability: Durability = .normal, deduplicationWindow: Duration = .seconds(7 * 24 * 3600)) {
            self.durability = durability
            self.deduplicationWindow = deduplicationWindow
        }
    }

    /// The user directory's record of one user.
    package typealias StoredUser = ParleyServerStore.StoredUser
    /// One message to store for its recipients.
    package typealias NewMessage = ParleyServerStore.NewMessage
    /// What ``storeMessages(_:now:)`` did for one recipient of one message.
    package typealias StoredDelivery = ParleyServerStore.StoredDelivery
    /// A message stored for a recipient and not yet acknowledged.
    package typealias PendingMessage = ParleyServerStore.PendingMessage
    /// A delivery that ``acknowledge(recipient:messages:now:)`` marked acknowledged.
    package typealias AcknowledgedMessage = ParleyServerStore.AcknowledgedMessage

    /// The database file.
    package let path: String
    let configuration: Configuration
    let database: SQLiteDatabase

    /// Opens the store at `path`, creating the file and its parent directory if needed, and
    /// brings its schema up to date.
    ///
    /// - Parameters:
    ///   - path: The SQLite file. Its `-wal` and `-shm` companions live beside it.
    ///   - configuration: Durability and de-duplication settings.
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/storageError`` when the directory or
    ///   the database cannot be created, opened or migrated.
    package init(path: String, configuration: Configuration = .init()) throws(ParleyError) {
        self.path = path
        self.configuration = configuration

        database = try SQLiteDatabase(
            path: path,
            durability: configuration.durability,
            migrator: Self.migrator,
            description: "the database"
        )
    }

    // MARK: Access

    /// Runs `body` in an IMMEDIATE write transaction (see ``SQLiteDatabase/write(_:_:)``).
    func write<T>(_ operation: String, _ body: (Database) throws -> T) throws(ParleyError) -> T {
        try database.write(operation, body)
    }

    /// Runs `body` on a reader connection, in a snapshot of the last committed state.
    func read<T>(_ operation: String, _ body: (Database) throws -> T) throws(ParleyError) -> T {
        try database.read(operation, body)
    }
}
