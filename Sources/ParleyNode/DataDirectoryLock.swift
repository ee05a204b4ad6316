import Foundation
import ParleyCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive `flock` on `<dataDirectory>/node.lock`, held from ``ParleyNode``'s initializer
/// until the node stops (or is deinitialized without running): two processes (or two nodes in one
/// process) on one data directory would share one node ID and one outbox, so the second is refused.
///
/// The kernel drops the lock when the process ends, however it ends, so a crash never leaves the
/// directory locked. The file holds the holder's process ID, for the error message only.
final class DataDirectoryLock: Sendable {
    /// The name of the lock file inside the data directory.
    static let fileName = "node.lock"

    /// The locked file; nil once released.
    private let descriptor: Mutex<Int32?>

    /// Takes the lock, creating the directory and the lock file if missing.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code ``/ParleyCore/ParleyError/Code/storageError``
    ///   when another node holds the directory, or the lock file cannot be opened.
    init(dataDirectory: String) throws(ParleyError) {
        let path = URL(fileURLWithPath: dataDirectory, isDirectory: true).appendingPathComponent(Self.fileName).path
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw ParleyError(
                code: .storageError, message: "cannot create the data directory \(dataDirectory): \(Self.reason(error))"
            )
        }
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw ParleyError(
                code: .storageError, message: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let failure = errno
            var holder = [UInt8](repeating: 0, count: 32)
            let count = pread(descriptor, &holder, holder.count, 0)
            close(descriptor)
            guard failure == EWOULDBLOCK else {
                throw ParleyError(
                    code: .storageError, message: "cannot lock \(path): \(String(cString: strerror(failure)))")
            }
            let pid = String(decoding: holder.prefix(max(count, 0)), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            throw ParleyError(
                code: .storageError,
                message: "the data directory \(dataDirectory) is in use by another node"
                    + (pid.isEmpty ? "" : " (process \(pid))") + "; one directory serves one node at a time"
            )
        }
        let pid = Array("\(getpid())\n".utf8)
        // Only for the message above: a failed write leaves the lock as good.
        if ftruncate(descriptor, 0) == 0 { _ = pwrite(descriptor, pid, pid.count, 0) }
        self.descriptor = Mutex(descriptor)
    }

    /// Releases the lock (closing the descriptor does); later calls do nothing.
    func release() {
        let descriptor = self.descriptor.withLock { descriptor in
            defer { descriptor = nil }
            return descriptor
        }
        if let descriptor { close(descriptor) }
    }

    deinit {
        release()
    }

    /// A Foundation error's own sentence, without its domain and code.
    static func reason(_ error: any Error) -> String {
        let nsError = error as NSError
        let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError
        if let underlying, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return nsError.localizedDescription
    }
}
