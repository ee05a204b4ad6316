public import NIOCore

/// NIO's adaptive receive-buffer sizing, in 16 bytes instead of 33.
///
/// A channel keeps its receive allocator as an existential, whose inline buffer holds three
/// words: `AdaptiveRecvByteBufferAllocator` (four `Int`s and a flag) does not fit, so every
/// channel that reads gets a boxed copy of it of its own (about 50 bytes of an idle connection
/// with the allocator's header). This one keeps the same sizes as `UInt32`s and fits inline.
///
/// The policy is NIO's: sizes are powers of two between `minimum` and `maximum`; a read that
/// fills the buffer doubles the next one, two reads in a row that fill at most half of it halve
/// it.
public struct CompactRecvAllocator: RecvByteBufferAllocator {
    private let minimumSize: UInt32
    private let maximumSize: UInt32
    private var nextSize: UInt32
    private var decreaseNow = false

    /// - Parameters: sizes in bytes; `minimum` and `initial` are rounded down to a power of two,
    ///   `maximum` up, all to at most 1 GiB.
    public init(minimum: Int, initial: Int, maximum: Int) {
        precondition(minimum > 0 && initial >= minimum && maximum >= initial, "sizes out of order")
        let cap = 1 << 30
        func below(_ value: Int) -> UInt32 {
            UInt32(1) << UInt32(Int.bitWidth - 1 - min(value, cap).leadingZeroBitCount)
        }
        func above(_ value: Int) -> UInt32 {
            let capped = min(value, cap)
            let down = below(capped)
            return Int(down) == capped ? down : down << 1
        }
        minimumSize = below(minimum)
        maximumSize = above(maximum)
        nextSize = max(below(initial), minimumSize)
    }

    public var minimum: Int { Int(minimumSize) }
    public var maximum: Int { Int(maximumSize) }

    public func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(capacity: Int(nextSize))
    }

    public func nextBufferSize() -> Int? {
        Int(nextSize)
    }

    public mutating func record(actualReadBytes: Int) -> Bool {
        let lower = nextSize >> 1
        let upper = nextSize << 1
        if actualReadBytes <= Int(lower) && lower >= minimumSize {
            if decreaseNow {
                nextSize = lower
                decreaseNow = false
            } else {
                decreaseNow = true
            }
            return false
        }
        decreaseNow = false
        if actualReadBytes >= Int(nextSize) && upper <= maximumSize {
            nextSize = upper
            return true
        }
        return false
    }
}
