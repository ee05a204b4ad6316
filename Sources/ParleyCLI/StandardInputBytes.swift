import NIOPosix
import ParleyCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Standard input as a sequence of blocks (`send-file -`, a stream of unknown length): each
/// block is read on NIO's blocking thread pool when the sender asks for it, so a fast pipe is
/// read no faster than the transfer goes and the concurrency pool is never blocked.
struct StandardInputBytes: AsyncSequence {
    typealias Element = [UInt8]

    /// The most bytes one read takes.
    static let blockSize = 1 << 16

    struct AsyncIterator: AsyncIteratorProtocol {
        private var ended = false

        mutating func next() async throws -> [UInt8]? {
            guard !ended else { return nil }
            let block = try await NIOThreadPool.singleton.runIfActive { () throws -> [UInt8] in
                var buffer = [UInt8](repeating: 0, count: StandardInputBytes.blockSize)
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                    if count >= 0 {
                        buffer.removeSubrange(count...)
                        return buffer
                    }
                    guard errno == EINTR else {
                        throw ParleyError(
                            code: .storageError,
                            message: "cannot read standard input: \(String(cString: strerror(errno)))")
                    }
                }
            }
            if block.isEmpty { ended = true }
            return ended ? nil : block
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
}
