import NIOCore
import ParleyCore
import ParleyWire
import Testing

@Suite("Custom command meta (docs/PROTOCOL.md section 24)")
struct CommandWireTests {
    @Test("frame types are in their reserved ranges and named")
    func frameTypes() {
        #expect(FrameType.sendCommand.rawValue == 0x0050)
        #expect(FrameType.commandReply.rawValue == 0x0051)
        #expect(FrameType.command.rawValue == 0x0120)
        #expect(FrameType.peerCommand.rawValue == 0x0220)
        #expect(FrameType.sendCommand.response.description == "SEND_COMMAND_OK")
        #expect(FrameType.commandReply.description == "COMMAND_REPLY")
        #expect(FrameType.command.description == "COMMAND")
        #expect(FrameType.peerCommand.description == "PEER_COMMAND")
    }

    @Test("a request's bytes are the ones PROTOCOL.md shows")
    func requestBytes() throws {
        let request = Parley_V1_CommandRequest(
            name: "time", recipient: 1001, timeout: .seconds(2), fireAndForget: false)
        let frame = Frame(type: .sendCommand, requestID: 5, message: request, payload: ByteBuffer(bytes: [0x68, 0x69]))
        #expect(
            Array(frame.meta.readableBytesView) == [
                0x0A, 0x04, 0x74, 0x69, 0x6D, 0x65, 0x10, 0xE9, 0x07, 0x18, 0xD0, 0x0F,
            ])
        let decoded = try frame.decodeMeta(as: Parley_V1_CommandRequest.self)
        #expect(decoded == request)
        #expect(decoded.timeout == .seconds(2))
    }

    @Test("timeouts: 0 means the default, and long ones are cut to the maximum")
    func timeouts() {
        var request = Parley_V1_CommandRequest()
        #expect(request.timeout == CommandTimeout.default)
        request.timeoutMs = UInt32.max
        #expect(request.timeout == CommandTimeout.maximum)
        request.timeoutMs = 250
        #expect(request.timeout == .milliseconds(250))
        // Fire-and-forget sends no timeout.
        #expect(
            Parley_V1_CommandRequest(name: "n", recipient: .server, timeout: .seconds(3), fireAndForget: true).timeoutMs
                == 0)
    }

    @Test("names are checked: empty, too long, control characters; the longest allowed passes")
    func names() throws {
        try Command.validate(name: String(repeating: "é", count: Command.maximumNameBytes / 2))
        for bad in ["", String(repeating: "n", count: Command.maximumNameBytes + 1), "tab\there", "nl\n"] {
            let error = #expect(throws: ParleyError.self) { try Command.validate(name: bad) }
            #expect(error?.code == .invalidRequest)
        }
        var storeWithReply = Parley_V1_CommandRequest(
            name: "n", recipient: 1001, timeout: .seconds(1), fireAndForget: false)
        storeWithReply.storeIfOffline = true
        #expect(throws: ParleyError.self) { try storeWithReply.validate() }
    }

    @Test("a reply carries a payload, NO_HANDLER, or COMMAND_FAILED with the application's code and text")
    func replies() throws {
        let payload = ByteBuffer(bytes: [1, 2, 3])
        let ok = Parley_V1_CommandReply(commandID: 9, .success([1, 2, 3]))
        #expect(try ok.outcome(payload: payload) == .success(payload))

        let failure = ParleyError(code: .commandFailed, message: "out of paper", applicationCode: 42)
        let failed = Parley_V1_CommandReply(commandID: 9, .failure(failure))
        #expect(failed.errorCode == 81)
        #expect(try failed.outcome(payload: ByteBuffer()) == .failure(failure))

        let missing = Parley_V1_CommandReply(commandID: 9, .failure(ParleyError(code: .noHandler, message: "none")))
        #expect(missing.errorCode == 80)
        #expect(missing.applicationCode == 0)
        #expect(try missing.outcome(payload: ByteBuffer()) == .failure(ParleyError(code: .noHandler, message: "none")))

        var unknown = ok
        unknown.errorCode = 82
        let error = #expect(throws: ParleyError.self) { try unknown.outcome(payload: payload) }
        #expect(error?.code == .invalidRequest)
    }

    @Test("an ERROR frame carries the application code of COMMAND_FAILED, and only of it")
    func errorFrame() throws {
        let failure = ParleyError(code: .commandFailed, message: "out of paper", applicationCode: 42)
        let decoded = ParleyError(errorFrame: .error(failure, requestID: 3))
        #expect(decoded == failure)
        #expect(decoded.applicationCode == 42)
        var meta = Parley_V1_Error()
        meta.code = ParleyError.Code.noHandler.wireValue
        meta.applicationCode = 7
        let other = ParleyError(errorFrame: Frame(type: .error, requestID: 3, message: meta))
        #expect(other.applicationCode == nil)
        #expect(
            CommandFailure.parleyError(for: CommandFailure(code: 5, text: "t"))
                == ParleyError(
                    code: .commandFailed, message: "t", applicationCode: 5))
    }

    @Test("the strict check refuses a command request with a field of the wrong type")
    func strictSchema() {
        // name (field 1) as a VARINT.
        let frame = Frame(type: .sendCommand, requestID: 1, meta: ByteBuffer(bytes: [0x08, 0x01]))
        let error = #expect(throws: ParleyError.self) { try frame.decodeMeta(as: Parley_V1_CommandRequest.self) }
        #expect(error?.code == .invalidRequest)
        // recipient above uint32.
        let big = Frame(
            type: .sendCommand, requestID: 1, meta: ByteBuffer(bytes: [0x10, 0x80, 0x80, 0x80, 0x80, 0x10]))
        #expect(throws: ParleyError.self) { try big.decodeMeta(as: Parley_V1_CommandRequest.self) }
    }
}
