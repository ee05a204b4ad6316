package import Foundation
package import GRDB
package import ParleyCore

/// How much of a committed transaction survives a crash.
package enum SQLiteDurability: Sendable {
    /// Survives a process crash or kill -9 (WAL mode, `synchronous=NORMAL`), not power loss.
    case normal
    /// Also survives power loss (`synchronous=FULL`), at the cost of an fsync per commit.
    case full
}

/// One SQLite file in WAL mode behind a GRDB pool: opening, migrating, and the transaction
/// helpers every store (the server store, the node registry) uses. Failures become ``ParleyError``s.
package struct SQLiteDatabase: Sendable {
    /// How long a writer waits for the write lock before failing.
    package static let busyTimeout: TimeInterval = 5

    package let pool: DatabasePool

    /// Opens (creating the file and its directory if needed) and migrates the database.
    ///
    /// - Parameter description: what the file is, for error messages ("the database").
    package init(
        path: String,
        durability: SQLiteDurability,
        migrator: DatabaseMigrator,
        description: String
    ) throws(ParleyError) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ParleyError(
                code: .storageError,
                message: "cannot create the directory of \(description) \(path)",
                cause: error
            )
        }

        var configuration = GRDB.Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(Self.busyTimeout)
        let synchronous =
            switch durability {
            case .normal: "PRAGMA synchronous = NORMAL"
            case .full: "PRAGMA synchronous = FULL"
            }
        configuration.prepareDatabase { db in try db.execute(sql: synchronous) }

        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // Opening the pool switches the writer to WAL mode and, with it, to synchronous=NORMAL,
            // after `prepareDatabase` ran: apply the configured mode again.
            try pool.writeWithoutTransaction { db in try db.execute(sql: synchronous) }
            try migrator.migrate(pool)
        } catch {
            throw ParleyError(code: .storageError, message: "cannot open \(description) \(path)", cause: error)
        }
    }

    /// Runs `body` in an IMMEDIATE write transaction: it takes the write lock before its first
    /// read, so a read-then-write (like choosing the next user ID) never races another writer.
    package func write<T>(_ operation: String, _ body: (Database) throws -> T) throws(ParleyError) -> T {
        do {
            return try pool.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                guard let result else {
                    throw ParleyError(code: .internalError, message: "\(operation): the transaction returned nothing")
                }
                return result
            }
        } catch {
            throw Self.storageError(operation, error)
        }
    }

    /// Runs `body` on a reader connection, in a snapshot of the last committed state.
    package func read<T>(_ operation: String, _ body: (Database) throws -> T) throws(ParleyError) -> T {
        do {
            return try pool.read(body)
        } catch {
            throw Self.storageError(operation, error)
        }
    }

    /// Passes a ``ParleyError`` thrown inside a transaction through; wraps anything else.
    package static func storageError(_ operation: String, _ error: any Error) -> ParleyError {
        if let error = error as? ParleyError { return error }
        return ParleyError(code: .storageError, message: "\(operation) failed", cause: error)
    }
}
