import NIOCore
import NIOPosix

/// Buffers that a ``LinkHandler`` lays its frames out in until the flush hands them to the
/// socket, kept per thread and reused by the next flush of any link on that thread: a busy
/// server writes two or more frames per message (the sender's answer, the recipient's MESSAGE),
/// and a buffer of their own costs each of them two allocations (the storage object and its
/// bytes). A link holds a buffer only between its first write and its flush, so an idle link
/// holds none.
///
/// Only the thread a pool belongs to uses it (``current``): it needs no lock.
final class OutboundBufferPool: @unchecked Sendable {
    /// Buffers kept for reuse, at most.
    static let kept = 16
    /// Larger buffers (a link that wrote a burst) are given back to the allocator.
    static let largestKept = 64 * 1024
    /// The capacity of a new buffer: room for a few small frames.
    static let initialCapacity = 1024

    private static let perThread = ThreadSpecificVariable<OutboundBufferPool>()

    /// This thread's pool.
    static var current: OutboundBufferPool {
        if let pool = perThread.currentValue { return pool }
        let pool = OutboundBufferPool()
        perThread.currentValue = pool
        return pool
    }

    private var buffers: [ByteBuffer] = []

    /// An empty buffer: a kept one if there is one, a new one from `allocator` if not.
    func take(allocator: ByteBufferAllocator) -> ByteBuffer {
        buffers.popLast() ?? allocator.buffer(capacity: Self.initialCapacity)
    }

    /// Keeps `buffer` for reuse when nothing else holds it any more (the socket took all of it);
    /// a buffer the channel still holds (a write that waits for the peer) is left to it.
    func give(_ buffer: inout ByteBuffer) {
        guard buffers.count < Self.kept, buffer.capacity <= Self.largestKept else { return }
        if buffer.modifyIfUniquelyOwned({ $0.clear() }) != nil {
            buffers.append(buffer)
        }
    }

    /// How many buffers are kept (for tests).
    var count: Int { buffers.count }
}
