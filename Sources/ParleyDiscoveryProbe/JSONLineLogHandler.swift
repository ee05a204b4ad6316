import Logging

/// Writes log records as JSON lines (`{"event":"log","level":...}`) on standard output, so a
/// test reads the probe's warnings and peer events from one ordered stream.
struct JSONLineLogHandler: LogHandler {
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

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        ProbeOutput.emit([
            "event": "log",
            "level": event.level.rawValue,
            "label": label,
            "message": event.message.description,
            "metadata": merged.mapValues { $0.description },
        ])
    }
}
