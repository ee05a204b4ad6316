import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Files only their owner may read (keys), created without ever replacing an existing one.
package enum PrivateFile {
    /// Why a private file could not be created.
    package struct Failure: Error, Sendable {
        package var message: String
    }

    /// Writes `contents` to a temporary file (mode 0600), syncs it and links it to `path`.
    ///
    /// - Returns: false when `path` exists already (nothing was changed): another process may have
    ///   created it first, and its file wins.
    package static func createExclusively(
        path: String,
        directory: String,
        contents: [UInt8]
    ) throws(Failure) -> Bool {
        let temporary = path + ".\(UUID().uuidString).tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw failure("cannot create \(temporary)")
        }
        defer { unlink(temporary) }
        var written = 0
        while written < contents.count {
            let result = contents.withUnsafeBytes { buffer in
                write(descriptor, buffer.baseAddress.map { $0 + written }, contents.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                let error = failure("cannot write \(temporary)")
                close(descriptor)
                throw error
            }
            written += result
        }
        guard fsync(descriptor) == 0 else {
            let error = failure("cannot sync \(temporary)")
            close(descriptor)
            throw error
        }
        close(descriptor)
        // link(2), unlike rename(2), fails when the target exists: an existing file is never replaced.
        guard link(temporary, path) == 0 else {
            if errno == EEXIST { return false }
            throw failure("cannot link \(path) into place")
        }
        let directoryDescriptor = open(directory, O_RDONLY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            // Makes the new directory entry durable; a failure here loses nothing already written.
            _ = fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
        return true
    }

    private static func failure(_ message: String) -> Failure {
        let code = errno
        return Failure(message: "\(message): \(String(cString: strerror(code))) (errno \(code))")
    }
}
