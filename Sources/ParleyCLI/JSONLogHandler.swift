import Foundation
import Logging

/// `--log-format json`: one JSON object per log record on standard error, for log shippers
/// (`{"time":"2026-12-02T10:00:00.123Z","level":"info","label":"parley.server","message":...,
/// "metadata":{...}}`).
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, logLevel: Logger.Level) {
        self.label = label
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    private struct Record: Encodable {
        var time: String
        var level: String
        var label: String
        var message: String
        var metadata: [String: String]?
        var source: String
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        let record = Record(
            time: Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)),
            level: event.level.rawValue,
            label: label,
            message: event.message.description,
            metadata: merged.isEmpty ? nil : merged.mapValues(\.description),
            source: event.source
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var line = try? encoder.encode(record) else { return }
        line.append(0x0A)
        FileHandle.standardError.write(line)
    }
}
