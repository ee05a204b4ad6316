import ParleyWire
import Testing

@testable import ParleyServer

@Suite("RequestFlow")
struct RequestFlowTests {
    func frame(_ id: UInt32) -> Frame {
        Frame(type: .userExists, requestID: id, message: Parley_V1_UserIdRequest())
    }

    @Test("frames are handled at once until the limit of unanswered requests; then they wait and reading stops")
    func unansweredLimit() {
        var flow = RequestFlow(maximumUnanswered: 2, maximumQueries: 8)
        #expect(flow.received(frame(1))?.requestID == 1)
        flow.started(query: false)
        #expect(flow.received(frame(2))?.requestID == 2)
        flow.started(query: false)
        #expect(flow.mayRead == false)
        #expect(flow.received(frame(3)) == nil)
        #expect(flow.received(frame(4)) == nil)
        #expect(flow.next() == nil)
        flow.answered(query: false)
        // In order, one at a time as room appears; reading resumes once nothing waits.
        #expect(flow.next()?.requestID == 3)
        flow.started(query: false)
        #expect(flow.next() == nil)
        #expect(!flow.mayRead)
        flow.answered(query: false)
        #expect(flow.next()?.requestID == 4)
        #expect(flow.queuedCount == 0)
        #expect(flow.mayRead)
    }

    @Test("queries have their own, lower limit")
    func queryLimit() {
        var flow = RequestFlow(maximumUnanswered: 256, maximumQueries: 1)
        #expect(flow.received(frame(1)) != nil)
        flow.started(query: true)
        #expect(flow.received(frame(2)) == nil)
        flow.answered(query: true)
        #expect(flow.next()?.requestID == 2)
    }

    @Test("a session change, or a full outbound queue, holds everything behind it")
    func busyAndUnwritable() {
        var flow = RequestFlow(maximumUnanswered: 256, maximumQueries: 8)
        flow.sessionChangeStarted()
        #expect(flow.received(frame(1)) == nil)
        flow.sessionChangeEnded()
        flow.writabilityChanged(false)
        #expect(flow.next() == nil)
        #expect(flow.received(frame(2)) == nil)
        #expect(!flow.mayRead)
        flow.writabilityChanged(true)
        #expect(flow.next()?.requestID == 1)
        #expect(flow.next()?.requestID == 2)
        #expect(flow.mayRead)
    }

    @Test("closing drops what waits")
    func close() {
        var flow = RequestFlow(maximumUnanswered: 1, maximumQueries: 1)
        flow.started(query: true)
        for id in 1...100 { #expect(flow.received(frame(UInt32(id))) == nil) }
        flow.close()
        flow.answered(query: true)
        #expect(flow.queuedCount == 0)
        #expect(flow.next() == nil)
    }
}
