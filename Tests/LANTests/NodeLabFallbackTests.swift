import Foundation
import Testing

/// Route fallback between real nodes and a real `parley server` in the lab: direct, then the
/// server when the direct path breaks, then direct again when the server is gone.
///
/// An extension of ``NodeLabTests``, so it runs serialized with the other tests of the suite
/// (they all share one lab).
extension NodeLabTests {
    @Test func fallbackFromDirectToServerAndFromServerToDirect() async throws {
        try await NodeLab.with(hosts: 3) { lab, data in
            let (server, alpha, _, beta, betaUser) = try await lab.serverAndTwoUserNodes(data: data)
            try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }

            // 1: direct
            let one = try await alpha.timedCommand("send \(betaUser) one")
            #expect(one.line.route == "direct", "\(one.line)")
            try await beta.waitFor("message one") { $0.event == "message" && $0.text == "one" }

            // 2: TCP from h2 to h3 is reset (the open link dies at its next packet, whichever side
            // opened it, and alpha's dials are refused), and h3 cannot open connections to h2; mDNS
            // (UDP) still says beta is there, and both still reach the server on h1. (No REJECT of
            // all output to h2: that would swallow the resets REJECT itself sends.)
            let partition = [
                ["INPUT", "-p", "tcp", "-s", NodeLab.address("h2"), "-j", "REJECT", "--reject-with", "tcp-reset"],
                [
                    "OUTPUT", "-p", "tcp", "--syn", "-d", NodeLab.address("h2"), "-j", "REJECT", "--reject-with",
                    "tcp-reset",
                ],
            ]
            // Marked before the cut: the link may die at once (a delayed ACK meets the REJECT rule).
            let beforeTwo = alpha.process.lines.count
            for rule in partition { _ = try await lab.run("h3", ["iptables", "-A"] + rule) }
            let two = try await alpha.timedCommand("send \(betaUser) two")
            print(
                "timing: send with the direct path reset -> answer \(two.line.route ?? "?") after \(seconds(two.took))")
            #expect(two.line.route == "server", "\(two.line)")
            // the reset ends the direct attempt at once; at worst the request waits a peer timeout (6 s)
            #expect(two.took < .seconds(8), "the send took \(two.took)")
            let twoReceived = try await beta.waitFor("message two") { $0.event == "message" && $0.text == "two" }
            #expect(twoReceived.route == "server", "\(twoReceived)")
            // alpha has noticed that the link is gone before the path comes back
            try await alpha.waitFor("beta unlinked", from: beforeTwo, timeout: .seconds(15)) {
                ($0.event == "peerChanged" && $0.nodeID == beta.nodeID && $0.linked == false)
                    || ($0.event == "peerDown" && $0.nodeID == beta.nodeID)
            }

            // 3: the path is back, the server is gone: direct again.
            for rule in partition { _ = try await lab.run("h3", ["iptables", "-D"] + rule) }
            let alphaMark = alpha.process.lines.count
            server.process.terminate()
            #expect(try await server.process.waitForExit() == 0)
            try await alpha.waitFor("server disconnected", from: alphaMark, timeout: .seconds(10)) {
                $0.event == "server" && $0.state == "disconnected"
            }
            let three = try await alpha.timedCommand("send \(betaUser) three")
            print(
                "timing: send with the server stopped -> answer \(three.line.route ?? "?") after \(seconds(three.took))"
            )
            #expect(three.line.route == "direct", "\(three.line)")
            #expect(three.took < .seconds(8), "the send took \(three.took)")
            let threeReceived = try await beta.waitFor("message three", timeout: .seconds(20)) {
                $0.event == "message" && $0.text == "three"
            }
            #expect(threeReceived.route == "direct", "\(threeReceived)")

            // each once, in order, by the routes it was sent
            let received = beta.process.lines.compactMap { NodeLine($0) }.filter { $0.event == "message" }
            #expect(received.map(\.text) == ["one", "two", "three"])
            #expect(received.map(\.route) == ["direct", "server", "direct"])
            #expect(received.map(\.id) == [one.line.messageID, two.line.messageID, three.line.messageID])
        }
    }
}

/// A server on h1 and two logged-on nodes, as returned by
/// ``LabSession/serverAndTwoUserNodes(data:)``.
typealias ServerAndTwoNodes = (server: LabServer, alpha: LabNode, alphaUser: UInt32, beta: LabNode, betaUser: UInt32)

extension LabSession {
    /// A `parley server` on h1 with users alpha and beta, and their nodes on h2 and h3, both
    /// logged on.
    func serverAndTwoUserNodes(data: URL) async throws -> ServerAndTwoNodes {
        let server = try await self.server("h1", data: data)
        let address = "\(NodeLab.address("h1")):\(server.port)"
        let alphaUser = try await register("h1", name: "alpha", password: "pw-alpha", server: address)
        let betaUser = try await register("h1", name: "beta", password: "pw-beta", server: address)
        let alpha = try await node(
            "h2", data: data, name: "alpha", ["--server", address, "--user", "\(alphaUser)", "--password", "pw-alpha"])
        let beta = try await node(
            "h3", data: data, name: "beta", ["--server", address, "--user", "\(betaUser)", "--password", "pw-beta"])
        for node in [alpha, beta] {
            try await node.waitFor("logon", timeout: .seconds(10)) {
                $0.event == "server" && $0.state == "loggedOn"
            }
        }
        return (server, alpha, alphaUser, beta, betaUser)
    }
}

/// A `parley server --json` running on a lab host.
struct LabServer: Sendable {
    let process: LabProcess
    let port: Int
}

extension LabSession {
    /// Starts `parley server` on `host` (all addresses, a port the system chooses, data in
    /// `data/server`) and waits for its "listening" line.
    func server(_ host: String, data: URL) async throws -> LabServer {
        let process = try start(
            host,
            [
                Lab.parley, "server", "--host", "0.0.0.0", "--port", "0", "--data",
                data.appendingPathComponent("server").path, "--password-cost", "8", "--json",
            ],
            name: "server@\(host)"
        )
        let line = try await process.waitFor("listening") { $0.event == "listening" }
        let fields = try JSONSerialization.jsonObject(with: Data(line.raw.utf8)) as? [String: Any]
        let port = try #require(fields?["port"] as? Int, "server printed \(line.raw)")
        return LabServer(process: process, port: port)
    }

    /// Registers a user with `parley register` run on `host`; returns the new user ID.
    func register(_ host: String, name: String, password: String, server: String) async throws -> UInt32 {
        let output = try await run(
            host,
            [Lab.parley, "register", "--server", server, "--name", name, "--password", password, "--json"]
        )
        let line = try #require(output.split(separator: "\n").first { $0.hasPrefix("{") }, "register printed \(output)")
        let fields = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        let user = try #require(fields?["userID"] as? Int, "register printed \(output)")
        return UInt32(user)
    }
}

extension LabNode {
    /// ``command(_:timeout:)``, and how long the answer took.
    func timedCommand(_ text: String, timeout: Duration = .seconds(30)) async throws -> (
        line: NodeLine, took: Duration
    ) {
        let start = ContinuousClock.now
        let line = try await command(text, timeout: timeout)
        return (line, line.arrived - start)
    }
}
