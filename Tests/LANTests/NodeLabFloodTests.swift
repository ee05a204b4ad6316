import Foundation
import ParleyTesting
import Testing

/// A flood over one direct link between two `parley node`s in lab namespaces with real avahi:
/// 10,000 messages as fast as the node console sends them (one command after the other, 100
/// queued at a time on its standard input). Its own lab (prefix `parleyflood`, subnet
/// 10.238.0.0/24), so it can run beside the other lab suites.
@Suite(
    "LAN lab: a flood of direct messages over one link",
    .serialized,
    .enabled(if: Lab.isRoot, "LAN lab tests need root (network namespaces, bind mounts); skipped"),
    .timeLimit(.minutes(3))
)
struct NodeLabFloodTests {
    static let environment = ["PARLEYLAB_PREFIX": "parleyflood", "PARLEYLAB_SUBNET": "10.238.0"]

    @Test func tenThousandMessagesArriveOnceInOrderOverOneLink() async throws {
        try await NodeLab.with(hosts: 2, environment: Self.environment) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha")
            let beta = try await lab.node("h2", data: data, name: "beta")
            try await alpha.waitFor("alpha linked to beta", timeout: .seconds(20)) {
                ["peerUp", "peerChanged"].contains($0.event) && $0.nodeID == beta.nodeID && $0.linked == true
            }
            let baseline = try Self.residentKiB(of: beta.pid)
            var peak = baseline
            let total = 10_000
            let batch = 100
            let started = ContinuousClock.now
            for first in stride(from: 0, to: total, by: batch) {
                let mark = alpha.process.lines.count
                for index in first..<first + batch { try alpha.process.send("send-node \(beta.nodeID) m-\(index)") }
                // The console answers in order: once "peers" is answered, the batch is sent.
                try alpha.process.send("peers")
                _ = try await alpha.waitFor("batch \(first / batch)", from: mark, timeout: .seconds(60)) {
                    $0.event == "peers" || $0.event == "error"
                }
                peak = max(peak, try Self.residentKiB(of: beta.pid))
            }
            let last = "m-\(total - 1)"
            _ = try await beta.waitFor("the last message", timeout: .seconds(60)) {
                $0.event == "message" && $0.text == last
            }
            let elapsed = ContinuousClock.now - started
            peak = max(peak, try Self.residentKiB(of: beta.pid))

            let alphaLines = alpha.process.lines.compactMap(NodeLine.init)
            let betaLines = beta.process.lines.compactMap(NodeLine.init)
            let sent = alphaLines.filter { $0.event == "sent" }
            #expect(sent.count == total)
            #expect(sent.allSatisfy { $0.route == "direct" }, "\(sent.first { $0.route != "direct" }?.raw ?? "")")
            #expect(
                !alphaLines.contains { $0.event == "error" }, "\(alphaLines.first { $0.event == "error" }?.raw ?? "")")
            let texts = betaLines.filter { $0.event == "message" && $0.fromNode == alpha.nodeID }.compactMap(\.text)
            #expect(texts == (0..<total).map { "m-\($0)" }, "\(texts.count) messages")
            // One link all along: neither node ever saw the other unlinked.
            #expect(!alphaLines.contains { Self.isLinkDown($0, of: beta.nodeID) })
            #expect(!betaLines.contains { Self.isLinkDown($0, of: alpha.nodeID) })
            print(
                "lab flood: \(total) messages in \(elapsed); beta's resident memory \(baseline / 1024) MiB before, peak \(peak / 1024) MiB"
            )
            #expect(peak - baseline < 128 * 1024, "beta's resident memory grew by \((peak - baseline) / 1024) MiB")
        }
    }

    static func isLinkDown(_ line: NodeLine, of node: String) -> Bool {
        line.nodeID == node && (line.event == "peerDown" || (line.event == "peerChanged" && line.linked == false))
    }

    /// VmRSS of process `pid`, in KiB.
    static func residentKiB(of pid: pid_t) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kibibytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { throw WaitTimeout(description: "no VmRSS for process \(pid)") }
        return kibibytes
    }
}
