import Foundation
import Testing

/// Impostors on the LAN: a node that claims a user whose key another node pinned, and an
/// advertisement that names another node's ID but points at the impostor's port.
///
/// An extension of ``NodeLabTests``, so these run serialized with the other tests of the suite
/// (they all share one lab).
extension NodeLabTests {
    @Test func aNodeClaimingAPinnedUserIsRefused() async throws {
        try await NodeLab.with(hosts: 3) { lab, data in
            // peer to peer: no server vouches for anyone, so alpha pins the first key it sees for 2002
            let alpha = try await lab.node("h1", data: data, name: "alpha", ["--user", "2001", "--password", "x"])
            let beta = try await lab.node("h2", data: data, name: "beta", ["--user", "2002", "--password", "x"])
            try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }
            let first = try await alpha.command("send 2002 first, to the node I pin")
            #expect(first.route == "direct", "\(first)")
            let one = try await beta.waitFor("first message") { $0.event == "message" }
            #expect(one.text == "first, to the node I pin")

            // Mallory: another key, the same user claim (and the same name, to look the part).
            let mallory = try await lab.node(
                "h3", data: data, name: "mallory", ["--user", "2002", "--password", "x"])
            #expect(mallory.nodeID != beta.nodeID)
            // Whoever of the two opens the standing link, alpha checks mallory's NODE_HELLO and refuses:
            // a "linkRefused" line, and the log line on stderr.
            let refused = try await alpha.waitFor("alpha's linkRefused for mallory", timeout: .seconds(20)) {
                $0.event == "linkRefused" && $0.nodeID == mallory.nodeID
            }
            #expect(refused.message?.contains("pinned-key-mismatch") == true, "\(refused)")
            let refusal = try await alpha.process.waitFor("alpha refusing mallory's link", timeout: .seconds(20)) {
                $0.event == "stderr" && $0.raw.contains("refusing a direct link")
                    && $0.raw.contains(mallory.nodeID) && $0.raw.contains("pinned-key-mismatch")
            }
            print("alpha's refusal: \(refusal.raw)")
            // mallory learns it was refused, by whom
            try await mallory.waitFor("mallory's linkRefused from alpha", timeout: .seconds(20)) {
                $0.event == "linkRefused" && $0.nodeID == alpha.nodeID
            }
            #expect(
                !alpha.process.lines.contains {
                    NodeLine($0).map { $0.nodeID == mallory.nodeID && $0.linked == true } ?? false
                })

            // Mallory speaks as 2002 to alpha: refused too, so it waits in mallory's outbox.
            try await mallory.waitFor("peerUp alpha", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == alpha.nodeID
            }
            let forged = try await mallory.command("send-node \(alpha.nodeID) I am 2002, trust me")
            #expect(forged.route == "queued", "\(forged)")

            // Alpha's next message for 2002 still goes to beta, directly.
            let second = try await alpha.command("send 2002 second, still for beta")
            #expect(second.route == "direct", "\(second)")
            try await beta.waitFor("second message") { $0.event == "message" && $0.text == "second, still for beta" }

            // With beta gone, mallory is the only node on the LAN that claims 2002: the message must
            // wait for beta, not go to mallory.
            try beta.process.send("quit")
            try await beta.waitFor("stopped") { $0.event == "stopped" }
            #expect(try await beta.process.waitForExit() == 0)
            try await alpha.waitFor("peerDown beta", timeout: .seconds(15)) {
                $0.event == "peerDown" && $0.nodeID == beta.nodeID
            }
            let third = try await alpha.command("send 2002 third, while beta is away")
            #expect(third.route == "queued", "\(third)")
            let restarted = try await lab.node(
                "h2", data: data, name: "beta", ["--user", "2002", "--password", "x"])
            #expect(restarted.nodeID == beta.nodeID)
            try await restarted.waitFor("third message", timeout: .seconds(30)) {
                $0.event == "message" && $0.text == "third, while beta is away"
            }

            // Mallory never got anything, and alpha never took mallory's forged message.
            let malloryMessages = mallory.process.lines.compactMap { NodeLine($0) }.filter { $0.event == "message" }
            #expect(malloryMessages.isEmpty, "mallory received \(malloryMessages)")
            let alphaMessages = alpha.process.lines.compactMap { NodeLine($0) }.filter { $0.event == "message" }
            #expect(alphaMessages.isEmpty, "alpha received \(alphaMessages)")
            let restartedTexts = restarted.process.lines.compactMap { NodeLine($0) }.filter { $0.event == "message" }
                .map(\.text)
            #expect(restartedTexts == ["third, while beta is away"])

            // A refused node backs off (5 s, doubling) instead of redialling at once: each attempt
            // costs alpha a TLS handshake.
            let refusals = alpha.process.lines.filter {
                $0.event == "stderr" && $0.raw.contains("refusing a direct link") && $0.raw.contains(mallory.nodeID)
            }
            let span = (refusals.last?.arrived).map { seconds($0 - refusal.arrived) } ?? "-"
            print("alpha refused mallory's link \(refusals.count) times in \(span)")
            #expect(refusals.count <= 6, "alpha refused mallory \(refusals.count) times in \(span)")
        }
    }

    @Test func anAdvertisementWithAnotherNodesIDLeadsNowhere() async throws {
        try await NodeLab.with(hosts: 3) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha")
            let beta = try await lab.node("h2", data: data, name: "beta")
            let mallory = try await lab.node("h3", data: data, name: "mallory")
            try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }
            let first = try await alpha.command("send-node \(beta.nodeID) first")
            #expect(first.route == "direct", "\(first)")
            try await beta.waitFor("first message") { $0.event == "message" && $0.text == "first" }

            // Mallory advertises beta's node ID at its own port.
            let fake = "\(NodeLab.address("h3")):\(mallory.port)"
            let publisher = try lab.start(
                "h3",
                [
                    "avahi-publish-service", "-s", "beta on h3", "_parley._tcp", "\(mallory.port)", "pv=1",
                    "node=\(beta.nodeID)",
                ],
                name: "fake beta@h3"
            )
            try await publisher.waitFor("established") { $0.raw.hasPrefix("Established under name") }
            try await alpha.waitFor("beta at \(fake)", timeout: .seconds(15)) {
                ["peerUp", "peerChanged"].contains($0.event) && $0.nodeID == beta.nodeID
                    && $0.addresses?.contains(fake) == true
            }

            // Beta goes away (its own advertisement with it): only the fake one is left.
            try beta.process.send("quit")
            try await beta.waitFor("stopped") { $0.event == "stopped" }
            #expect(try await beta.process.waitForExit() == 0)
            let second = try await alpha.command("send-node \(beta.nodeID) second")
            // The dial to mallory's port expects beta's key: refused, so the message waits.
            #expect(second.route == "queued", "\(second)")

            let restarted = try await lab.node("h2", data: data, name: "beta")
            try await restarted.waitFor("second message", timeout: .seconds(30)) {
                $0.event == "message" && $0.text == "second"
            }
            let malloryMessages = mallory.process.lines.compactMap { NodeLine($0) }.filter { $0.event == "message" }
            #expect(malloryMessages.isEmpty, "mallory received \(malloryMessages)")
            let texts = restarted.process.lines.compactMap { NodeLine($0) }.filter { $0.event == "message" }.map(\.text)
            #expect(texts == ["second"])
        }
    }
}
