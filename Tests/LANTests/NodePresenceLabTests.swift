import Foundation
import Testing

/// Presence of `parley node`s between network namespaces. Part of the node lab suite, which runs
/// its tests one at a time on its one lab.
extension NodeLabTests {
    @Test func aStatusSetOnOneNodeIsSeenByItsPeer() async throws {
        try await NodeLab.with(hosts: 2) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha")
            let beta = try await lab.node("h2", data: data, name: "beta")
            let first = try await beta.waitFor("peerUp alpha", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == alpha.nodeID
            }
            #expect(status(of: first) == "online", "\(first)")

            let mark = beta.process.lines.count
            let answerMark = alpha.process.lines.count
            try alpha.process.send("status away")
            let answer = try await alpha.waitFor("status answer", from: answerMark) {
                ["status", "error"].contains($0.event)
            }
            #expect(answer.event == "status" && status(of: answer) == "away", "\(answer)")
            let changed = try await beta.waitFor("alpha away", from: mark, timeout: .seconds(10)) {
                $0.event == "peerChanged" && $0.nodeID == alpha.nodeID && status(of: $0) == "away"
            }
            #expect(changed.name == "alpha")

            // "offline" is what a node shows for peers it cannot reach: refused, and nothing changes
            let refusedMark = alpha.process.lines.count
            try alpha.process.send("status offline")
            let refused = try await alpha.waitFor("refusal", from: refusedMark) {
                ["status", "error"].contains($0.event)
            }
            #expect(refused.event == "error", "\(refused)")
            let peers = try await beta.command("peers")
            #expect(status(of: peers, peer: alpha.nodeID) == "away", "\(peers)")
        }
    }
}

extension NodeLabTests {
    /// Readable output names a peer's status once ("[online, linked]", never "[online, online]"),
    /// and `status` without text shows the node's own.
    @Test func textOutputShowsAPeersStatusOnce() async throws {
        try await NodeLab.with(hosts: 2) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha")
            let beta = try lab.start(
                "h2", [Lab.parley, "node", "--data", data.appendingPathComponent("beta").path, "--name", "beta"],
                name: "node beta@h2 (text)")
            let up = try await beta.waitFor("alpha in beta's output", timeout: .seconds(10)) {
                $0.raw.hasPrefix("peer up: alpha") && $0.raw.contains(alpha.nodeID)
            }
            #expect(up.raw.hasSuffix("[online]") || up.raw.hasSuffix("[online, linked]"), "\(up.raw)")
            let mark = beta.lines.count
            try beta.send("status")
            let status = try await beta.waitFor("the status", from: mark) { $0.raw.hasPrefix("status: ") }
            #expect(status.raw == "status: online")
            try beta.send("peers")
            let peers = try await beta.waitFor("the peers", from: mark) { $0.raw.hasPrefix("alpha ") }
            #expect(!peers.raw.contains("online, online"), "\(peers.raw)")
        }
    }
}

/// The `status` field of a node JSON line, or of one peer in a `peers` answer.
private func status(of line: NodeLine, peer: String? = nil) -> String? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(line.raw.utf8)) as? [String: Any] else {
        return nil
    }
    guard let peer else { return object["status"] as? String }
    let peers = object["peers"] as? [[String: Any]] ?? []
    return peers.first { $0["nodeID"] as? String == peer }?["status"] as? String
}
