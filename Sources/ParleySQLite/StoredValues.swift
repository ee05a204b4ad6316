package import Foundation
package import GRDB
package import ParleyCore

// Conversions between domain values and the columns that hold them. Reading is strict: a value of
// the wrong storage class or out of range is a corrupt row, reported as a thrown `.storageError`,
// never as a crash (GRDB's non-optional `row[i]` would trap) nor as a silent SQLite conversion.

extension Row {
    package func int64(_ index: Int, _ column: StaticString) throws -> Int64 {
        let value = try decode(DatabaseValue.self, atIndex: index)
        guard case .int64(let integer) = value.storage else { throw Self.corrupt(column, value) }
        return integer
    }

    package func text(_ index: Int, _ column: StaticString) throws -> String {
        let value = try decode(DatabaseValue.self, atIndex: index)
        guard case .string(let text) = value.storage else { throw Self.corrupt(column, value) }
        return text
    }

    package func bytes(_ index: Int, _ column: StaticString) throws -> [UInt8] {
        let value = try decode(DatabaseValue.self, atIndex: index)
        guard case .blob(let data) = value.storage else { throw Self.corrupt(column, value) }
        return [UInt8](data)
    }

    package func bool(_ index: Int, _ column: StaticString) throws -> Bool {
        switch try int64(index, column) {
        case 0: return false
        case 1: return true
        case let other: throw Self.corrupt(column, other.databaseValue)
        }
    }

    package func userID(_ index: Int, _ column: StaticString) throws -> UserID {
        let integer = try int64(index, column)
        guard let raw = UInt32(exactly: integer) else { throw Self.corrupt(column, integer.databaseValue) }
        return UserID(raw)
    }

    package func messageID(_ index: Int, _ column: StaticString) throws -> MessageID {
        MessageID(UInt64(bitPattern: try int64(index, column)))
    }

    package func date(_ index: Int, _ column: StaticString) throws -> Date {
        Date(storedMilliseconds: try int64(index, column))
    }

    /// A list of user IDs stored as consecutive little-endian UInt32s.
    package func userIDs(_ index: Int, _ column: StaticString) throws -> [UserID] {
        let bytes = try bytes(index, column)
        guard bytes.count % 4 == 0 else {
            throw ParleyError(code: .storageError, message: "corrupt row: \(column) holds \(bytes.count) bytes")
        }
        return stride(from: 0, to: bytes.count, by: 4).map { offset in
            let raw =
                UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
                | UInt32(bytes[offset + 3]) << 24
            return UserID(raw)
        }
    }

    package static func corrupt(_ column: StaticString, _ value: DatabaseValue) -> ParleyError {
        let shown =
            switch value.storage {
            case .null: "NULL"
            case .int64(let integer): "the integer \(integer)"
            case .double(let double): "the real \(double)"
            case .string: "text"
            case .blob(let data): "a \(data.count)-byte blob"
            }
        return ParleyError(code: .storageError, message: "corrupt row: \(column) holds \(shown)")
    }
}

extension Date {
    /// The stored form: whole milliseconds since 1970, rounded, clamped to Int64.
    package var storedMilliseconds: Int64 {
        let milliseconds = (timeIntervalSince1970 * 1000).rounded()
        guard milliseconds.isFinite else { return 0 }
        if milliseconds >= Double(Int64.max) { return .max }
        if milliseconds <= Double(Int64.min) { return .min }
        return Int64(milliseconds)
    }

    package init(storedMilliseconds milliseconds: Int64) {
        self.init(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// The date as the store gives it back: rounded to whole milliseconds.
    package var stored: Date { Date(storedMilliseconds: storedMilliseconds) }
}

extension Duration {
    /// Whole milliseconds, saturating at Int64's bounds.
    package var storedMilliseconds: Int64 {
        let (seconds, overflow) = components.seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return components.seconds < 0 ? .min : .max }
        let (total, overflowAgain) = seconds.addingReportingOverflow(components.attoseconds / 1_000_000_000_000_000)
        if overflowAgain { return seconds < 0 ? .min : .max }
        return total
    }
}

extension UserID {
    package var storedValue: Int64 { Int64(rawValue) }
}

extension MessageID {
    package var storedValue: Int64 { Int64(bitPattern: rawValue) }
}

extension Array where Element == UserID {
    /// Consecutive little-endian UInt32s; read back by ``Row/userIDs(_:_:)``.
    package var storedBlob: Data { Data(storedBytes) }

    /// The bytes of ``storedBlob``.
    package var storedBytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 4)
        for id in self {
            let raw = id.rawValue
            bytes.append(contentsOf: [
                UInt8(raw & 0xFF), UInt8(raw >> 8 & 0xFF), UInt8(raw >> 16 & 0xFF), UInt8(raw >> 24),
            ])
        }
        return bytes
    }
}

extension Sequence where Element == UserID {
    /// A JSON array of the IDs, to bind as ONE argument read by `json_each(?)`: a statement cannot
    /// take thousands of separate arguments.
    package var jsonArray: String {
        "[" + map { String($0.rawValue) }.joined(separator: ",") + "]"
    }
}

extension String {
    /// The case-folded form stored in `…_folded` columns and compared by every search: lowercased
    /// (so non-ASCII letters fold too) and in Unicode NFC, so "É" typed as E + combining accent
    /// finds "é" typed precomposed.
    package var folded: String {
        lowercased().precomposedStringWithCanonicalMapping
    }

    /// The value with LIKE's wildcards (`%`, `_`) and the escape character (`\`) escaped, for a
    /// pattern with `ESCAPE '\'`.
    package var escapedForLike: String {
        // Scalars, not Characters: "%" followed by a combining mark is one Character, but SQLite
        // still sees the "%".
        var escaped = String.UnicodeScalarView()
        for scalar in unicodeScalars {
            if scalar == "%" || scalar == "_" || scalar == "\\" { escaped.append("\\") }
            escaped.append(scalar)
        }
        return String(escaped)
    }
}
