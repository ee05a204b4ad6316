import Foundation
import ParleyCore
import ParleyLink

/// Errors as one readable line for people: the code and message, then the causes beneath that
/// add something, with Foundation's errors told by their own sentence (never "Error
/// Domain=NSCocoaErrorDomain Code=...").
enum ErrorText {
    /// "code (number): message (cause: ...)" for a ``ParleyError``, else ``chain(_:)``.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? ParleyError else { return chain(error) }
        let application = error.applicationCode.map { " (application code \($0))" } ?? ""
        return "\(error.code.name) (\(error.code.wireValue)): " + chain(error) + application
    }

    /// The error's message, then its causes that say more than the message already does.
    static func chain(_ error: any Error) -> String {
        let (message, detail, cause) = parts(error)
        let text = message + detail
        return text + causeText(cause, after: text)
    }

    /// An error's message, what it adds to it (a path), and its cause.
    private static func parts(_ error: any Error) -> (message: String, detail: String, cause: (any Error)?) {
        switch error {
        case let error as ParleyError:
            (error.message, "", error.cause)
        case let error as NodeIdentityError:
            (error.message, error.path.map { " (\($0))" } ?? "", error.cause)
        default:
            (foundationText(error) ?? "\(error)", "", nil)
        }
    }

    /// A cause whose message the text holds already (wrapped errors often repeat it) adds only
    /// its detail and its own cause.
    private static func causeText(_ cause: (any Error)?, after text: String) -> String {
        guard let cause else { return "" }
        let (message, detail, deeper) = parts(cause)
        if text.contains(message) { return detail + causeText(deeper, after: text + detail) }
        let said = message + detail
        return " (cause: \(said)\(causeText(deeper, after: text + said)))"
    }

    /// The sentence of a Foundation (Cocoa or POSIX) error; nil for other errors.
    private static func foundationText(_ error: any Error) -> String? {
        let nsError = error as NSError
        switch nsError.domain {
        case NSPOSIXErrorDomain:
            return String(cString: strerror(Int32(nsError.code)))
        case NSCocoaErrorDomain:
            let path = nsError.userInfo[NSFilePathErrorKey] as? String
            let underlying = (nsError.userInfo[NSUnderlyingErrorKey] as? any Error).flatMap(foundationText)
            return (underlying ?? "file system error \(nsError.code)") + (path.map { ": \($0)" } ?? "")
        default:
            return nil
        }
    }
}
