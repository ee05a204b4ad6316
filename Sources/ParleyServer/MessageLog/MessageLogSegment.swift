import Glibc
import NIOCore
import ParleyCore

/// One file of the message log: records appended by the log's one writer, read anywhere with
/// `pread`. The descriptor stays open while anything refers to the segment, so a reader that
/// took a record's place before a compaction removed the file can still read it.
final class MessageLogSegment: @unchecked Sendable {
    /// The segment's place in the log: higher numbers were started later.
    let number: UInt64
    let path: String
    private let descriptor: Int32

    // The fields below change under the log's index lock (or, for `size`, on the writer's
    // thread while the segment is the active one).

    /// Bytes in the file (what the log wrote; a torn tail was cut at open).
    var size: Int64
    /// Bytes of records still needed: messages with pending deliveries, tombstones within the
    /// de-duplication window.
    var liveBytes: Int64 = 0
    /// The stored messages whose record is in this segment, at their ``MessageLogEntry/slot``;
    /// nil once nothing of one is pending or it moved.
    var messages: [MessageLogEntry?] = []
    /// The non-nil ones among `messages`.
    var liveMessages = 0
    /// Acknowledgements written to this segment (some may have expired or moved since).
    var acknowledgements: [MessageLog.DeliveryKey] = []

    /// The magic bytes at the start of every segment file.
    static let magic: [UInt8] = Array("PARLEYLOG1\n".utf8)

    static func fileName(_ number: UInt64) -> String {
        let digits = String(number)
        return "segment-" + String(repeating: "0", count: max(0, 12 - digits.count)) + digits + ".log"
    }

    /// The segment number in a file name made by ``fileName(_:)``, nil for any other name.
    static func number(inFileName name: String) -> UInt64? {
        guard name.hasPrefix("segment-"), name.hasSuffix(".log") else { return nil }
        return UInt64(name.dropFirst("segment-".count).dropLast(".log".count))
    }

    private init(number: UInt64, path: String, descriptor: Int32, size: Int64) {
        self.number = number
        self.path = path
        self.descriptor = descriptor
        self.size = size
    }

    deinit { close(descriptor) }

    /// Creates a new, empty segment file holding the magic bytes (fails if it exists).
    static func create(number: UInt64, in directory: String) throws(ParleyError) -> MessageLogSegment {
        let path = directory + "/" + fileName(number)
        let descriptor = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw MessageLogSegment.error("creating", path) }
        let segment = MessageLogSegment(number: number, path: path, descriptor: descriptor, size: 0)
        var buffer = ByteBuffer(bytes: magic)
        try segment.append(&buffer)
        return segment
    }

    /// Opens an existing segment file and checks its magic bytes.
    static func open(number: UInt64, in directory: String) throws(ParleyError) -> MessageLogSegment {
        let path = directory + "/" + fileName(number)
        let descriptor = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { throw MessageLogSegment.error("opening", path) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            close(descriptor)
            throw MessageLogSegment.error("reading the size of", path)
        }
        let segment = MessageLogSegment(number: number, path: path, descriptor: descriptor, size: Int64(status.st_size))
        let head = try segment.read(at: 0, count: min(Int(segment.size), magic.count))
        guard head == magic else {
            throw ParleyError(code: .storageError, message: "\(path) is not a Parley message log segment")
        }
        return segment
    }

    /// Appends `buffer`'s readable bytes at the end of the file; on failure cuts the file back
    /// to where it was, so a half-written batch is never read back.
    func append(_ buffer: inout ByteBuffer) throws(ParleyError) {
        let start = size
        let failure: Int32? = buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = pwrite(
                    descriptor, bytes.baseAddress! + offset, bytes.count - offset, off_t(start) + off_t(offset))
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += written
            }
            return nil
        }
        if let failure {
            _ = ftruncate(descriptor, off_t(start))
            throw ParleyError(
                code: .storageError,
                message: "writing the message log \(path) failed: \(String(cString: strerror(failure)))")
        }
        size += Int64(buffer.readableBytes)
    }

    /// Forces the written bytes to the disk (durability `full`).
    func synchronize() throws(ParleyError) {
        guard fdatasync(descriptor) == 0 else { throw MessageLogSegment.error("synchronizing", path) }
    }

    /// Cuts the file to `length` bytes (a torn tail found at open).
    func truncate(to length: Int64) throws(ParleyError) {
        guard ftruncate(descriptor, off_t(length)) == 0 else { throw MessageLogSegment.error("truncating", path) }
        size = length
    }

    /// `count` bytes from `offset`.
    func read(at offset: Int64, count: Int) throws(ParleyError) -> [UInt8] {
        var failure: Int32?
        var short = false
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { bytes, initialized in
            var done = 0
            while done < count {
                let got = pread(descriptor, bytes.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                if got < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    break
                }
                if got == 0 {
                    short = true
                    break
                }
                done += got
            }
            initialized = done
        }
        if let failure {
            throw ParleyError(
                code: .storageError,
                message: "reading the message log \(path) failed: \(String(cString: strerror(failure)))")
        }
        if short {
            throw ParleyError(code: .storageError, message: "the message log \(path) ended before a record did")
        }
        return bytes
    }

    /// Reads the record at `offset` (one whose place the log's index holds).
    func record(at offset: Int64, length: Int) throws(ParleyError) -> MessageLogRecord {
        let bytes = try read(at: offset, count: length)
        let result = bytes.withUnsafeBytes { MessageLogRecord.read(from: $0) }
        guard case .record(let record, _) = result else {
            throw ParleyError(code: .storageError, message: "the message log \(path) has a damaged record at \(offset)")
        }
        return record
    }

    /// Counts `entry`, whose record was just written here, as live.
    func hold(_ entry: MessageLogEntry) {
        entry.segment = self
        entry.slot = Int32(messages.count)
        messages.append(entry)
        liveMessages += 1
        liveBytes += Int64(entry.length)
    }

    /// Stops counting `entry` (nothing of it is pending, or it moved).
    func letGo(_ entry: MessageLogEntry) {
        let slot = Int(entry.slot)
        guard slot < messages.count, messages[slot] === entry else { return }
        messages[slot] = nil
        liveMessages -= 1
        liveBytes -= Int64(entry.length)
    }

    /// Removes the file (the segment was compacted).
    func remove() {
        unlink(path)
    }

    private static func error(_ doing: String, _ path: String) -> ParleyError {
        ParleyError(
            code: .storageError, message: "\(doing) the message log \(path) failed: \(String(cString: strerror(errno)))"
        )
    }
}

/// A stored message with pending deliveries, as the log's index keeps it: who sent it and where
/// its record is (its body and the rest stay on disk).
final class MessageLogEntry: @unchecked Sendable {
    let sender: UserID
    let messageID: MessageID
    let wantsReceipt: Bool

    // Changed under the log's index lock.

    /// Where its record is.
    var segment: MessageLogSegment
    var offset: Int64
    var length: Int32
    /// Its place in `segment.messages`.
    var slot: Int32 = 0
    /// Deliveries not acknowledged yet.
    var pending: Int32

    init(
        sender: UserID, messageID: MessageID, wantsReceipt: Bool, pending: Int, segment: MessageLogSegment,
        offset: Int64, length: Int
    ) {
        self.sender = sender
        self.messageID = messageID
        self.wantsReceipt = wantsReceipt
        self.segment = segment
        self.offset = offset
        self.length = Int32(length)
        self.pending = Int32(pending)
    }

    /// One delivery fewer is pending; the record is dead once none is.
    func releaseDelivery() {
        pending -= 1
        if pending == 0 { segment.letGo(self) }
    }
}
