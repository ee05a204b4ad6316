public import NIOCore

/// Writes integers, varints and bytes straight into room reserved at the end of a `ByteBuffer`,
/// for the hot frames and records that have many small fields.
///
/// Each `ByteBuffer.writeInteger` checks the buffer's capacity and, inlined into this package,
/// makes a dynamic exclusivity check on the buffer's storage (a thread-local access set): per
/// field. A frame's header and meta written field by field spent about 12 % of the server's CPU
/// there under load. ``ByteBuffer/writeRaw(reserving:_:)`` makes both checks once for all the
/// fields it writes; the writer itself checks every store against the room reserved.
///
/// Inlinable, so that callers in other modules get it specialized for their integer types.
public struct RawWriter {
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline let capacity: Int
    @usableFromInline var written = 0

    /// Bytes written so far.
    @inlinable public var count: Int { written }

    @inlinable
    init(_ bytes: UnsafeMutableRawBufferPointer) {
        // A buffer with reserved room always has storage.
        self.base = bytes.baseAddress!
        self.capacity = bytes.count
    }

    @inlinable
    func room(_ needed: Int) {
        precondition(written + needed <= capacity, "RawWriter: more written than reserved")
    }

    /// Appends `value` in `endianness` (big, network order, by default, as `writeInteger`).
    @inlinable
    public mutating func integer<T: FixedWidthInteger>(_ value: T, endianness: Endianness = .big) {
        let size = MemoryLayout<T>.size
        room(size)
        let ordered = endianness == .big ? value.bigEndian : value.littleEndian
        (base + written).storeBytes(of: ordered, as: T.self)
        written += size
    }

    /// Appends `value` as a protobuf varint (at most 10 bytes).
    @inlinable
    public mutating func varint(_ value: UInt64) {
        room(HotMeta.varintSize(value))
        var value = value
        while value >= 0x80 {
            (base + written).storeBytes(of: UInt8(truncatingIfNeeded: value) | 0x80, as: UInt8.self)
            written += 1
            value >>= 7
        }
        (base + written).storeBytes(of: UInt8(value), as: UInt8.self)
        written += 1
    }

    /// Appends a varint field; a 0 (the default) is left out, as proto3 does.
    @inlinable
    public mutating func varintField(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        varint(UInt64(field << 3))
        varint(value)
    }

    /// Appends a packed `repeated uint32` field (at most 11 + 5 per value bytes); an empty list
    /// is left out, as proto3 does.
    @inlinable
    public mutating func packedField(_ field: Int, _ values: some Collection<UInt32>) {
        guard !values.isEmpty else { return }
        var length = 0
        for value in values { length += HotMeta.varintSize(UInt64(value)) }
        varint(UInt64(field << 3 | 2))
        varint(UInt64(length))
        for value in values { varint(UInt64(value)) }
    }

    /// Appends `bytes` as they are.
    @inlinable
    public mutating func bytes(_ bytes: UnsafeRawBufferPointer) {
        room(bytes.count)
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        (base + written).copyMemory(from: source, byteCount: bytes.count)
        written += bytes.count
    }
}

extension ByteBuffer {
    /// Reserves `maximum` bytes at the end, lets `body` write up to that many through a
    /// ``RawWriter``, and keeps what it wrote. Returns the number of bytes written.
    @inlinable
    @discardableResult
    public mutating func writeRaw(reserving maximum: Int, _ body: (inout RawWriter) -> Void) -> Int {
        writeWithUnsafeMutableBytes(minimumWritableBytes: maximum) { bytes in
            var writer = RawWriter(bytes)
            body(&writer)
            return writer.written
        }
    }
}
