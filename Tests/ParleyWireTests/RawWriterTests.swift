import NIOCore
import ParleyWire
import Testing

@Suite("RawWriter")
struct RawWriterTests {
    @Test("integers come out as writeInteger writes them, in both byte orders, after what was there")
    func integers() {
        var expected = ByteBuffer(string: "head")
        var buffer = ByteBuffer(string: "head")
        _ = buffer.readBytes(length: 2)
        _ = expected.readBytes(length: 2)
        let written = buffer.writeRaw(reserving: 64) { writer in
            writer.integer(UInt8(0xAB))
            writer.integer(UInt16(0x0102))
            writer.integer(UInt32(0x0304_0506), endianness: .little)
            writer.integer(Int64(-2))
            writer.integer(UInt64(0x0708_090A_0B0C_0D0E), endianness: .little)
            #expect(writer.count == 1 + 2 + 4 + 8 + 8)
        }
        expected.writeInteger(UInt8(0xAB))
        expected.writeInteger(UInt16(0x0102))
        expected.writeInteger(UInt32(0x0304_0506), endianness: .little)
        expected.writeInteger(Int64(-2))
        expected.writeInteger(UInt64(0x0708_090A_0B0C_0D0E), endianness: .little)
        #expect(written == 23)
        #expect(buffer == expected)
    }

    @Test("varints and varint fields: protobuf's encoding at every length, a 0 field left out")
    func varints() {
        let values: [UInt64] = [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 35, UInt64(UInt32.max), .max]
        for value in values {
            var buffer = ByteBuffer()
            buffer.writeRaw(reserving: 10) { $0.varint(value) }
            #expect(Array(buffer.readableBytesView) == Self.reference(value), "\(value)")

            var field = ByteBuffer()
            field.writeRaw(reserving: 20) { $0.varintField(5, value) }
            let expected = value == 0 ? [] : Self.reference(5 << 3) + Self.reference(value)
            #expect(Array(field.readableBytesView) == expected, "field \(value)")
        }
    }

    @Test("bytes are copied as they are; an empty run writes nothing")
    func bytes() {
        var buffer = ByteBuffer()
        let count = buffer.writeRaw(reserving: 8) { writer in
            [UInt8]([1, 2, 3]).withUnsafeBytes { writer.bytes($0) }
            [UInt8]().withUnsafeBytes { writer.bytes($0) }
        }
        #expect(count == 3)
        #expect(Array(buffer.readableBytesView) == [1, 2, 3])
    }

    /// Protobuf's varint, written the plain way.
    private static func reference(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        repeat {
            let low = UInt8(value & 0x7F)
            value >>= 7
            bytes.append(value == 0 ? low : low | 0x80)
        } while value != 0
        return bytes
    }
}
