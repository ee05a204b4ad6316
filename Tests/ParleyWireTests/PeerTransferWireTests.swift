import Foundation
import NIOCore
import ParleyCore
import ParleyWire
import Testing

/// The worked example of docs/PROTOCOL.md section 26.9, byte for byte, as this implementation
/// encodes it: a third party reading the spec gets the same frames the nodes send.
@Suite("PEER_TRANSFER frames (PROTOCOL.md 26.9)")
struct PeerTransferWireTests {
    private func hex(_ frame: Frame) -> String {
        frame.encoded().readableBytesView.map { String(format: "%02x", $0) }.joined(separator: " ")
    }

    private func state(offset: UInt64, closed: Bool = false) -> Parley_V1_TransferState {
        var state = Parley_V1_TransferState()
        state.transferID = 7
        state.offset = offset
        state.chunkSize = 65_536
        if closed {
            state.phase = .closed
            state.outcome = .completed
        }
        return state
    }

    @Test("the worked example's frames are the encoder's")
    func workedExample() {
        var start = Parley_V1_TransferStart()
        start.transferID = 7
        start.recipient = 1001
        start.name = "a.txt"
        start.size = 5
        #expect(
            hex(Frame(type: .peerTransferStart, requestID: 3, message: start))
                == "00 00 00 1a 02 30 00 00 00 00 00 03 00 00 00 0e 08 07 10 e9 07 1a 05 61 2e 74 78 74 20 05")
        #expect(
            hex(Frame(type: FrameType.peerTransferStart.response, requestID: 3, message: state(offset: 0)))
                == "00 00 00 12 82 30 00 00 00 00 00 03 00 00 00 06 08 07 18 80 80 04")

        var chunk = Parley_V1_TransferChunk()
        chunk.transferID = 7
        #expect(
            hex(Frame(type: .peerTransferChunk, requestID: 4, message: chunk, payload: ByteBuffer(string: "hello")))
                == "00 00 00 13 02 31 00 00 00 00 00 04 00 00 00 02 08 07 68 65 6c 6c 6f")
        #expect(
            hex(Frame(type: FrameType.peerTransferChunk.response, requestID: 4, message: state(offset: 5)))
                == "00 00 00 14 82 31 00 00 00 00 00 04 00 00 00 08 08 07 10 05 18 80 80 04")

        var end = Parley_V1_TransferEnd()
        end.transferID = 7
        end.size = 5
        // SHA-256("hello")
        let digest = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        end.sha256 = Data(stride(from: 0, to: 64, by: 2).map { UInt8(digest.dropFirst($0).prefix(2), radix: 16) ?? 0 })
        #expect(
            hex(Frame(type: .peerTransferEnd, requestID: 5, message: end)).hasPrefix(
                "00 00 00 32 02 32 00 00 00 00 00 05 00 00 00 26 08 07 10 05 1a 20 2c f2 4d ba"))
        #expect(hex(Frame(type: .peerTransferEnd, requestID: 5, message: end)).hasSuffix("93 8b 98 24"))
        #expect(
            hex(Frame(type: FrameType.peerTransferEnd.response, requestID: 5, message: state(offset: 5, closed: true)))
                == "00 00 00 18 82 32 00 00 00 00 00 05 00 00 00 0c 08 07 10 05 18 80 80 04 20 02 28 01")
    }

    @Test("the frame types are named")
    func names() {
        #expect(FrameType.peerTransferStart.description == "PEER_TRANSFER_START")
        #expect(FrameType.peerTransferChunk.description == "PEER_TRANSFER_CHUNK")
        #expect(FrameType.peerTransferEnd.response.description == "PEER_TRANSFER_END_OK")
        #expect(FrameType.peerTransferClose.rawValue == 0x0233)
    }
}
