import Foundation
public import Logging

/// A logger that is silent unless PARLEY_TEST_LOGS is set (then it logs at debug level to
/// standard error).
public func makeTestLogger(_ label: String) -> Logger {
    guard ProcessInfo.processInfo.environment["PARLEY_TEST_LOGS"] != nil else {
        return Logger(label: label, factory: { _ in SwiftLogNoOpLogHandler() })
    }
    var logger = Logger(label: label, factory: { StreamLogHandler.standardError(label: $0) })
    logger.logLevel = .debug
    return logger
}
