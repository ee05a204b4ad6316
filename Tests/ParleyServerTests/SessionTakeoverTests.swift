import Testing

@testable import ParleyServer

@Suite("The one-session rule")
struct SessionTakeoverTests {
    @Test("the same node takes a session over; another node, or none, only with the newer-wins policy")
    func takeover() {
        #expect(SessionRegistry.takeover(existingNode: "a", node: "a", replaceExisting: false) == .sameNode)
        #expect(SessionRegistry.takeover(existingNode: "a", node: "a", replaceExisting: true) == .sameNode)
        #expect(SessionRegistry.takeover(existingNode: "a", node: "b", replaceExisting: false) == nil)
        #expect(SessionRegistry.takeover(existingNode: nil, node: "b", replaceExisting: false) == nil)
        #expect(SessionRegistry.takeover(existingNode: "a", node: nil, replaceExisting: false) == nil)
        #expect(SessionRegistry.takeover(existingNode: nil, node: nil, replaceExisting: false) == nil)
        #expect(SessionRegistry.takeover(existingNode: nil, node: nil, replaceExisting: true) == .newerSession)
        #expect(SessionRegistry.takeover(existingNode: "a", node: "b", replaceExisting: true) == .newerSession)
    }
}
