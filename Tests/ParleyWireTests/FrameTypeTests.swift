import NIOCore
import ParleyCore
import ParleyWire
import Testing

@Suite("FrameType and ERROR frames")
struct FrameTypeTests {
    @Test("the response bit marks answers")
    func responseBit() {
        let response = FrameType.sendMessage.response
        #expect(response.rawValue == 0x8030)
        #expect(response.isResponse)
        #expect(!FrameType.sendMessage.isResponse)
        #expect(response.request == .sendMessage)
        #expect(FrameType.hello.response.rawValue == 0x8001)
    }

    @Test("descriptions name the type")
    func descriptions() {
        #expect(FrameType.hello.description == "HELLO")
        #expect(FrameType.hello.response.description == "HELLO_OK")
        #expect(FrameType.sendMessage.description == "SEND_MESSAGE")
        #expect(FrameType.sessionReplaced.description == "SESSION_REPLACED")
        #expect(FrameType(rawValue: 0x0077).description == "0x77")
        #expect(FrameType(rawValue: 0x8077).description == "0x77_OK")
    }

    @Test("an ERROR frame carries a ParleyError there and back")
    func errorFrameRoundTrip() throws {
        let error = ParleyError(code: .tooManyAttempts, message: "slow down", retryAfterMilliseconds: 1500)
        let frame = Frame.error(error, requestID: 17, fatal: true)
        #expect(frame.type == .error)
        #expect(frame.requestID == 17)
        let meta: Parley_V1_Error = try frame.decodeMeta()
        #expect(meta.fatal)
        #expect(ParleyError(errorFrame: frame) == error)

        var wire = frame.encoded()
        var decoder = FrameDecoder(maximumFrameSize: 1024)
        let decoded = try #require(try decoder.decode(buffer: &wire))
        #expect(ParleyError(errorFrame: decoded) == error)
    }

    @Test("no retry-after travels as nil; unknown codes keep their number")
    func errorFrameEdgeCases() {
        let plain = ParleyError(code: .notLoggedOn, message: "log on first")
        #expect(ParleyError(errorFrame: .error(plain, requestID: 0)).retryAfterMilliseconds == nil)

        let future = ParleyError(code: .init(wireValue: 777), message: "from a newer server")
        let decoded = ParleyError(errorFrame: .error(future, requestID: 1))
        #expect(decoded.code.wireValue == 777)
        #expect(decoded.code.name == "code-777")
        #expect(!ParleyError.Code.known.contains(decoded.code))
    }

    @Test("an ERROR frame with an unreadable meta is a protocol violation")
    func unreadableErrorFrame() {
        let frame = Frame(type: .error, requestID: 3, meta: ByteBuffer(bytes: [0xFF, 0xFF, 0xFF]))
        #expect(ParleyError(errorFrame: frame).code == .protocolViolation)
    }

    @Test("decoding a malformed meta throws invalidRequest")
    func malformedMeta() {
        let frame = Frame(type: .logOn, requestID: 3, meta: ByteBuffer(bytes: [0xFF, 0xFF, 0xFF]))
        let error = #expect(throws: ParleyError.self) { try frame.decodeMeta(as: Parley_V1_LogonRequest.self) }
        #expect(error?.code == .invalidRequest)
    }
}
