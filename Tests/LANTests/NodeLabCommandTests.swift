import Foundation
import Testing

/// Custom commands between real nodes in the lab (docs/PROTOCOL.md section 24.6): through the
/// server while it runs and no direct path exists, then over the direct link with the server
/// stopped.
///
/// An extension of ``NodeLabTests``, so it runs serialized with the other tests of the suite
/// (they all share one lab).
extension NodeLabTests {
    @Test func commandRoundTripThroughTheServerAndDirectlyWithTheServerStopped() async throws {
        try await NodeLab.with(hosts: 3) { lab, data in
            let (server, alpha, alphaUser, beta, betaUser) = try await lab.serverAndTwoUserNodes(data: data)
            let handling = try await beta.command("echo-command ping")
            #expect(handling.event == "handling", "\(handling)")
            try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }

            // With the server up: the direct link (both users allow it).
            let first = try await alpha.timedCommand("command \(betaUser) ping first")
            #expect(first.line.event == "commandReply", "\(first.line)")
            #expect(first.line.text == "first", "\(first.line)")
            #expect(first.line.route == "direct", "\(first.line)")
            try await beta.waitFor("the first command") {
                $0.event == "command" && $0.text == "first" && $0.fromNode == alpha.nodeID
            }
            let unhandled = try await alpha.command("command \(betaUser) nothing-here")
            #expect(unhandled.event == "error", "\(unhandled)")
            #expect(unhandled.message?.contains("no-handler") == true, "\(unhandled)")

            // The server is stopped: the command still goes directly.
            let alphaMark = alpha.process.lines.count
            server.process.terminate()
            #expect(try await server.process.waitForExit() == 0)
            try await alpha.waitFor("server disconnected", from: alphaMark, timeout: .seconds(10)) {
                $0.event == "server" && $0.state == "disconnected"
            }
            let second = try await alpha.timedCommand("command \(betaUser) ping with the server down")
            print("timing: command with the server stopped -> reply after \(seconds(second.took))")
            #expect(second.line.event == "commandReply", "\(second.line)")
            #expect(second.line.text == "with the server down", "\(second.line)")
            #expect(second.line.route == "direct", "\(second.line)")
            #expect(second.took < .seconds(8), "the command took \(second.took)")

            // And back: beta asks alpha, which has no handler.
            let back = try await beta.command("command \(alphaUser) ping")
            #expect(back.event == "error", "\(back)")
            #expect(back.message?.contains("no-handler") == true, "\(back)")
        }
    }
}
