import Crypto
import Foundation
import NIOCore
import ParleyCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The spool files of held transfers (docs/PROTOCOL.md section 26): one file per transfer in the
/// data directory's `transfers` folder, named `SENDER-ID.part`, written in order so that its
/// length is the transfer's offset. Nothing here holds more than one chunk (or one 1 MiB block
/// while hashing) in memory.
///
/// Every method blocks: call them on the blocking pool, never on an event loop.
struct TransferSpool: Sendable {
    let directory: String

    init(dataDirectory: String) {
        directory = URL(fileURLWithPath: dataDirectory).appendingPathComponent("transfers").path
    }

    func path(sender: UserID, id: TransferID) -> String {
        "\(directory)/\(sender.rawValue)-\(id.rawValue).part"
    }

    /// The bytes held for a transfer (0 when it has no file yet).
    func size(sender: UserID, id: TransferID) -> UInt64 {
        var status = stat()
        guard stat(path(sender: sender, id: id), &status) == 0 else { return 0 }
        return UInt64(status.st_size)
    }

    /// Writes `bytes` at `offset`, which must be the file's length.
    ///
    /// - Returns: the file's new length.
    /// - Throws: `transferOffsetMismatch` when `offset` is not the file's length, `storageError`
    ///   when the file cannot be written.
    func append(_ bytes: ByteBuffer, at offset: UInt64, sender: UserID, id: TransferID) throws(ParleyError) -> UInt64 {
        try makeDirectory()
        let descriptor = open(path(sender: sender, id: id), O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw Self.failure("opening the spool file of transfer \(id)") }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw Self.failure("reading the spool file of transfer \(id)") }
        let held = UInt64(status.st_size)
        guard held == offset else {
            throw ParleyError(
                code: .transferOffsetMismatch,
                message:
                    "transfer \(id): the server holds \(held) bytes; a chunk at offset \(offset) does not follow them")
        }
        var written = 0
        let total = bytes.readableBytes
        let failed = bytes.withUnsafeReadableBytes { raw -> Bool in
            while written < total {
                let result = pwrite(
                    descriptor, raw.baseAddress! + written, total - written, off_t(offset) + off_t(written))
                if result < 0 {
                    if errno == EINTR { continue }
                    return true
                }
                written += result
            }
            return false
        }
        if failed {
            // Whatever was written of this chunk goes, so the file's length stays an offset the
            // sender was told or can be told.
            _ = ftruncate(descriptor, off_t(offset))
            throw Self.failure("writing the spool file of transfer \(id)")
        }
        return offset + UInt64(total)
    }

    /// Reads up to `length` bytes at `offset` (fewer at the end, none past it).
    func readChunk(sender: UserID, id: TransferID, offset: UInt64, length: Int) throws(ParleyError) -> ByteBuffer {
        let descriptor = open(path(sender: sender, id: id), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Self.failure("opening the spool file of transfer \(id)") }
        defer { close(descriptor) }
        var buffer = ByteBufferAllocator().buffer(capacity: max(length, 0))
        var failed = false
        while buffer.readableBytes < length {
            let start = buffer.readableBytes
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length - start) { raw -> Int in
                var result: Int
                repeat {
                    result = pread(descriptor, raw.baseAddress!, length - start, off_t(offset) + off_t(start))
                } while result < 0 && errno == EINTR
                if result < 0 {
                    failed = true
                    return 0
                }
                return result
            }
            if failed { throw Self.failure("reading the spool file of transfer \(id)") }
            if count == 0 { break }
        }
        return buffer
    }

    /// The length and SHA-256 of what is held, read in 1 MiB blocks.
    func digest(sender: UserID, id: TransferID) throws(ParleyError) -> (size: UInt64, sha256: [UInt8]) {
        let descriptor = open(path(sender: sender, id: id), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return (0, Array(SHA256.hash(data: [UInt8]()))) }
        defer { close(descriptor) }
        var hasher = SHA256()
        var block = [UInt8](repeating: 0, count: 1 << 20)
        var size: UInt64 = 0
        while true {
            let count = block.withUnsafeMutableBytes { raw in read(descriptor, raw.baseAddress!, raw.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Self.failure("hashing the spool file of transfer \(id)")
            }
            if count == 0 { break }
            block.withUnsafeBytes { raw in hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: raw[..<count]))
            }
            size += UInt64(count)
        }
        return (size, Array(hasher.finalize()))
    }

    /// Flushes a transfer's file to the disk (at the end of its upload).
    func sync(sender: UserID, id: TransferID) throws(ParleyError) {
        let descriptor = open(path(sender: sender, id: id), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw Self.failure("flushing the spool file of transfer \(id)") }
    }

    /// Discards what is held: the transfer starts again from 0.
    func discard(sender: UserID, id: TransferID) {
        _ = truncate(path(sender: sender, id: id), 0)
    }

    /// Deletes a transfer's file (nothing when it has none).
    func delete(sender: UserID, id: TransferID) {
        _ = unlink(path(sender: sender, id: id))
    }

    private func makeDirectory() throws(ParleyError) {
        if mkdir(directory, 0o700) != 0, errno != EEXIST {
            throw Self.failure("creating the spool folder \(directory)")
        }
    }

    private static func failure(_ what: String) -> ParleyError {
        let reason = String(cString: strerror(errno))
        return ParleyError(code: .storageError, message: "\(what) failed: \(reason)")
    }
}
