import Foundation
import ParleyCore
import ParleyNode
import ParleyTesting
import Testing

@Suite("Commands between nodes over direct links", .timeLimit(.minutes(1)))
struct NodeCommandTests {
    @Test("a command goes over the direct link to the peer's handler and back, with typed errors")
    func directRoundTrip() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        let ann = try makeLANNode("ann", in: directory, lan: lan)
        let bob = try makeLANNode("bob", in: directory, lan: lan)
        try bob.handleCommands(named: "echo") { $0.payload }
        try bob.handleCommands(named: "print") { _ in throw CommandFailure(code: 7, text: "jammed") }
        try await withRunningNode(ann) { annEvents in
            try await withRunningNode(bob) { bobEvents in
                try await annEvents.wait("bob to show up") { $0.hasPeerUp(bob.nodeID) }
                let result = try await ann.sendCommand("echo", payload: [1, 2, 3], to: .node(bob.nodeID))
                #expect(result.reply == [1, 2, 3])
                #expect(result.route == .direct)

                let failed = try await expectNodeError(.commandFailed) {
                    try await ann.sendCommand("print", to: .node(bob.nodeID))
                }
                #expect(failed.applicationCode == 7)
                #expect(failed.message == "jammed")
                try await expectNodeError(.noHandler) { try await ann.sendCommand("missing", to: .node(bob.nodeID)) }

                #expect(try await ann.fireCommand("echo", payload: [9], to: .node(bob.nodeID)) == .direct)
                try await bobEvents.wait("the commands at bob") { events in
                    events.filter {
                        if case .commandReceived(_, ann.nodeID, .direct) = $0 { return true }
                        return false
                    }.count >= 4
                }
                // ann has no handler: bob's command is answered NO_HANDLER by ann.
                try await expectNodeError(.noHandler) { try await bob.sendCommand("echo", to: .node(ann.nodeID)) }
                bob.removeCommandHandler(named: "echo")
                try await expectNodeError(.noHandler) { try await ann.sendCommand("echo", to: .node(bob.nodeID)) }
            }
        }
    }

    /// Expects `body` to fail with a ParleyError of `code`; returns it.
    @discardableResult
    private func expectNodeError<T>(_ code: ParleyError.Code, _ body: () async throws -> T) async throws -> ParleyError
    {
        do {
            let value = try await body()
            Issue.record("expected \(code), got \(value)")
            throw CancellationError()
        } catch let error as ParleyError {
            #expect(error.code == code, "\(error)")
            return error
        }
    }
}
