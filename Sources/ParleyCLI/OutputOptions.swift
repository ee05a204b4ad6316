import ArgumentParser
import Logging

/// A command that says how much it logs by default; `main` bootstraps logging from it.
protocol LoggingCommand {
    var output: OutputOptions { get }
    static var defaultLogLevel: Logger.Level { get }
}

/// Options every command takes: output format and log level.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print one JSON object per line on standard output instead of readable text.")
    var json = false

    @Option(help: "How much to log on standard error (default: warning; info for server).")
    var logLevel: LogLevel?

    @Option(help: "How log records look on standard error: text, or json (one object per line).")
    var logFormat: LogFormat = .text
}

/// `--log-format` values.
enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// `--log-level` values.
enum LogLevel: String, ExpressibleByArgument, CaseIterable {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level {
        switch self {
        case .trace: .trace
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        case .critical: .critical
        }
    }
}
