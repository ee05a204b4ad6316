import Foundation
import GRDB
package import ParleyCore
package import ParleySQLite

/// Where a fact in the ``NodeRegistry`` came from.
package enum FactSource: String, Sendable, Hashable, CaseIterable {
    /// The server's directory or logon answer: the server vouches for it.
    case server
    /// LAN discovery (an advertised record): anyone on the LAN can claim it.
    case discovery
    /// A peer said so over a direct link.
    case peer
    /// The local user entered it.
    case user
}

/// A LAN node's local cache of the users and nodes it has learned about, its pinned node keys and
/// its durable outbox, in one SQLite file in the node's data directory.
///
/// The cache lets a node answer whois and find while the server is unreachable, check a peer's
/// key against the one the server vouched for (or, without a server, against the key pinned on
/// first use), and keep messages for unreachable users across restarts until a route exists.
///
/// Like ``ServerStore``, the registry owns its schema (named, append-only migrations run when it
/// opens) and exposes domain methods only. Every method is synchronous and blocks until SQLite
/// answers; writes are serialized by one writer connection, reads run concurrently (WAL mode).
///
/// Every failure is a ``ParleyError``: SQLite errors, and rows that cannot be decoded, have code
/// ``ParleyError/Code/storageError``.
package final class NodeRegistry: Sendable {
    /// How the registry uses SQLite.
    package struct Configuration: Sendable {
        /// How much of a committed transaction survives a crash: the server store's choices.
        package typealias Durability = SQLiteDurability

        /// SQLite's synchronous mode. Default ``SQLiteDurability/normal``:
        /// committed writes (an enqueued message included) survive a crash or kill -9 of the
        /// process, not power loss.
        package var durability: Durability
        /// The command a person runs to unpin a key, named in the error that refuses a changed key
        /// ("… unpin it with `parley unpin node <ID>`"). Default "parley unpin".
        package var unpinCommand: String

        package init(durability: Durability = .normal, unpinCommand: String = "parley unpin") {
            self.durability = durability
            self.unpinCommand = unpinCommand
        }
    }

    /// The name of the registry's file in the node's data directory.
    package static let fileName = "parley-node.sqlite"

    /// The database file.
    package let path: String
    let configuration: Configuration
    let database: SQLiteDatabase

    /// Opens the registry in `dataDirectory` (its file is ``fileName``), creating the directory
    /// and the file if needed, and brings its schema up to date.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/storageError`` when the directory or
    ///   the database cannot be created, opened or migrated.
    package convenience init(dataDirectory: String, configuration: Configuration = .init()) throws(ParleyError) {
        let path = URL(fileURLWithPath: dataDirectory, isDirectory: true).appendingPathComponent(Self.fileName).path
        try self.init(path: path, configuration: configuration)
    }

    /// Opens the registry at `path`, creating the file and its parent directory if needed.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/storageError`` when the directory or
    ///   the database cannot be created, opened or migrated.
    package init(path: String, configuration: Configuration = .init()) throws(ParleyError) {
        self.path = path
        self.configuration = configuration
        database = try SQLiteDatabase(
            path: path,
            durability: configuration.durability,
            migrator: Self.migrator,
            description: "the node registry"
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
