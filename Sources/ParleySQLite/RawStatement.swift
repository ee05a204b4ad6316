package import GRDB
import GRDBSQLite

/// A cached GRDB statement driven through SQLite's C interface, for the few statements the
/// message path runs per message.
///
/// GRDB's `execute(arguments:)` builds an array of `DatabaseValue`s per call (an allocation and
/// several retains per argument); in the group-commit thread that overhead cost about as much
/// as SQLite's own work. Here every argument is bound in place. Use only inside the database
/// access that fetched the statement; each run ends with a reset, so GRDB finds the statement as
/// it expects.
package struct RawStatement {
    private let statement: Statement
    private let db: Database

    package init(_ db: Database, sql: String) throws {
        self.db = db
        self.statement = try db.cachedStatement(sql: sql)
    }

    private var handle: SQLiteStatement { statement.sqliteStatement }

    /// SQLite makes its own copy of a bound blob.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    package func bind(_ index: Int32, _ value: Int64) {
        sqlite3_bind_int64(handle, index, value)
    }

    package func bind(_ index: Int32, _ value: Bool) {
        sqlite3_bind_int64(handle, index, value ? 1 : 0)
    }

    /// Binds `bytes` as a blob (an empty one too, never NULL).
    package func bind(_ index: Int32, bytes: [UInt8]) {
        if bytes.isEmpty {
            sqlite3_bind_zeroblob(handle, index, 0)
        } else {
            bytes.withUnsafeBytes { buffer in
                _ = sqlite3_bind_blob(handle, index, buffer.baseAddress, Int32(buffer.count), Self.transient)
            }
        }
    }

    package func bindNull(_ index: Int32) {
        sqlite3_bind_null(handle, index)
    }

    /// Binds `text` (its UTF-8, copied by SQLite).
    package func bind(_ index: Int32, text: String) {
        var text = text
        text.withUTF8 { buffer in
            // A non-null pointer for empty text too: NULL would bind SQL NULL.
            let start = UnsafeRawPointer(buffer.baseAddress) ?? UnsafeRawPointer(bitPattern: 1)!
            _ = sqlite3_bind_text(
                handle, index, start.assumingMemoryBound(to: CChar.self), Int32(buffer.count), Self.transient)
        }
    }

    /// Runs a statement that returns no rows, then resets it.
    package func execute() throws {
        defer { sqlite3_reset(handle) }
        let code = sqlite3_step(handle)
        guard code == SQLITE_DONE else { throw error(code) }
    }

    /// Runs a query and hands its first row, if any, to `read`; then resets it.
    package func first<T>(_ read: (Row) throws -> T) throws -> T? {
        defer { sqlite3_reset(handle) }
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return try read(Row(handle))
        case SQLITE_DONE: return nil
        case let code: throw error(code)
        }
    }

    /// The current row of a query.
    package struct Row {
        fileprivate let handle: SQLiteStatement

        fileprivate init(_ handle: SQLiteStatement) { self.handle = handle }

        package func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

        package func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    }

    private func error(_ code: Int32) -> DatabaseError {
        let extended = db.sqliteConnection.map { sqlite3_extended_errcode($0) } ?? code
        let message = db.sqliteConnection.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
        return DatabaseError(resultCode: ResultCode(rawValue: extended), message: message, sql: statement.sql)
    }
}
