import Logging
import Synchronization

/// The process's log level, which a running server can change (SIGHUP reloads it from the
/// configuration). Every handler `main` bootstraps reads it at each log call: one atomic load.
enum RuntimeLogLevel {
    private static let current = Atomic<UInt8>(Self.code(.info))

    static var level: Logger.Level {
        get { Self.level(current.load(ordering: .relaxed)) }
        set { current.store(Self.code(newValue), ordering: .relaxed) }
    }

    private static func code(_ level: Logger.Level) -> UInt8 {
        UInt8(Logger.Level.allCases.firstIndex(of: level) ?? 2)
    }

    private static func level(_ code: UInt8) -> Logger.Level {
        let levels = Logger.Level.allCases
        return levels[min(Int(code), levels.count - 1)]
    }
}

/// A handler whose level is ``RuntimeLogLevel`` (a logger's own level setting is ignored).
struct RuntimeLevelLogHandler: LogHandler {
    var inner: any LogHandler

    var logLevel: Logger.Level {
        get { RuntimeLogLevel.level }
        set {}  // the process-wide level rules
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        inner.log(event: event)
    }
}
