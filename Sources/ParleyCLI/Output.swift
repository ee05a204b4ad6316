import Foundation
import Synchronization

/// Writes a command's results to standard output: one JSON object per line with `--json`,
/// readable lines otherwise. Each line goes out in one write, so pipes see it at once and lines
/// from concurrent tasks never interleave.
struct Output: Sendable {
    let isJSON: Bool

    private static let lock = Mutex(())

    init(json: Bool) {
        self.isJSON = json
    }

    /// Prints `record` as one JSON line with `--json`, else `text` (which may hold several lines).
    func emit(_ record: some Encodable, text: @autoclosure () -> String) throws {
        if isJSON {
            try json(record)
        } else {
            try line(text())
        }
    }

    /// Prints `record` as one JSON line with `--json`, and nothing otherwise.
    func emitJSON(_ record: some Encodable) throws {
        if isJSON { try json(record) }
    }

    /// Prints a line of text.
    func line(_ text: String) throws {
        try Self.write(Data((text + "\n").utf8), to: .standardOutput)
    }

    func json(_ record: some Encodable) throws {
        var data = try Self.encoder.encode(record)
        data.append(UInt8(ascii: "\n"))
        try Self.write(data, to: .standardOutput)
    }

    /// A one-line notice for people on standard error; never part of a command's results.
    static func note(_ text: String) {
        let line = text.replacingOccurrences(of: "\n", with: " ") + "\n"
        do {
            try write(Data(line.utf8), to: .standardError)
        } catch {
            // Standard error is gone: there is nowhere left to report anything.
        }
    }

    private static func write(_ data: Data, to handle: FileHandle) throws {
        try lock.withLock { _ in try handle.write(contentsOf: data) }
    }

    private static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Timestamp.format(date))
        }
        return encoder
    }
}

/// How dates appear in output: ISO 8601, UTC, with milliseconds.
enum Timestamp {
    static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
