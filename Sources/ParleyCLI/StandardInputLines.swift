import NIOPosix
import Synchronization

/// Reads standard input one line at a time without blocking the concurrency pool: each read
/// runs on NIO's blocking thread pool, which works for terminals, pipes and files alike.
///
/// A read still blocked when the task is cancelled is abandoned (the thread stays blocked until
/// a line or EOF comes); the caller is expected to be on its way out.
struct StandardInputLines {
    private let pool: NIOThreadPool

    init(pool: NIOThreadPool = .singleton) {
        self.pool = pool
    }

    /// The next line without its line break; nil at end of input or when cancelled.
    func next() async -> String? {
        let slot = Slot()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                slot.continuation.withLock { $0 = continuation }
                // Cancelled before the continuation was stored: the handler found nothing to resume.
                if Task.isCancelled {
                    slot.resume(returning: nil)
                    return
                }
                pool.submit { _ in
                    slot.resume(returning: readLine(strippingNewline: true))
                }
            }
        } onCancel: {
            slot.resume(returning: nil)
        }
    }

    /// Whoever comes first, the read or the cancellation, resumes the waiting task.
    private final class Slot: Sendable {
        let continuation = Mutex<CheckedContinuation<String?, Never>?>(nil)

        func resume(returning line: String?) {
            continuation.withLock { $0.take() }?.resume(returning: line)
        }
    }
}
