import Foundation
import Testing

/// A direct file transfer between two lab hosts across a dropped link: `parley send-file --data`
/// on h2, `parley receive --data --files` on h3, a `parley server` on h1 for logons only. Its own
/// lab (prefix `parleyfiles`, subnet 10.237.0.0/24), so it can run beside the other lab suites.
@Suite(
    "LAN lab: a direct file transfer resumes after the link drops",
    .serialized,
    .enabled(if: Lab.isRoot, "LAN lab tests need root (network namespaces, bind mounts); skipped"),
    .timeLimit(.minutes(3))
)
struct NodeLabFileTests {
    static let environment = ["PARLEYLAB_PREFIX": "parleyfiles", "PARLEYLAB_SUBNET": "10.237.0"]

    @Test func aDirectTransferResumesAfterTheLinkComesBack() async throws {
        try await NodeLab.with(hosts: 3, environment: Self.environment) { lab, data in
            let server = try await lab.server("h1", data: data)
            let address = "10.237.0.1:\(server.port)"
            let alpha = try await lab.register("h1", name: "alpha", password: "pw-alpha", server: address)
            let beta = try await lab.register("h1", name: "beta", password: "pw-beta", server: address)
            let size = 192 << 20
            let source = data.appendingPathComponent("film.bin")
            var generator = SystemRandomNumberGenerator()
            var words = [UInt64](repeating: 0, count: size / 8)
            for index in words.indices { words[index] = generator.next() }
            let bytes = words.withUnsafeBytes { Data($0) }
            try bytes.write(to: source)
            let inbox = data.appendingPathComponent("inbox")
            try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)

            let receiver = try lab.start(
                "h3",
                [
                    Lab.parley, "receive", "--json", "--data", data.appendingPathComponent("beta").path, "--files",
                    inbox.path, "--count", "1", "--server", address, "--user", "\(beta)", "--password", "pw-beta",
                ],
                name: "receive@h3")
            _ = try await receiver.waitFor("beta's logon", timeout: .seconds(20)) { $0.event == "loggedOn" }
            let sender = try lab.start(
                "h2",
                [
                    Lab.parley, "send-file", "--json", "--data", data.appendingPathComponent("alpha").path,
                    "--server", address, "--user", "\(alpha)", "--password", "pw-alpha", "--to", "\(beta)",
                    source.path,
                ],
                name: "send-file@h2")
            _ = try await sender.waitFor("an eighth sent", timeout: .seconds(60)) {
                $0.event == "progress" && Self.field("bytesDone", of: $0.raw) >= size / 8
            }
            // Down for longer than the links' idle timeout (6 s): the link dies, the sender dials
            // again until the cable is back, then resumes from beta's offset.
            let mark = sender.lines.count
            try await lab.link("h2", "eth0", up: false)
            try await Task.sleep(for: .seconds(9))
            try await lab.link("h2", "eth0", up: true)
            let resumed = try await sender.waitFor("the resumed run", from: mark, timeout: .seconds(60)) {
                $0.event == "progress" && Self.field("resumedFrom", of: $0.raw) > 0
            }
            let resumedFrom = Self.field("resumedFrom", of: resumed.raw)
            let done = try await sender.waitFor("completed", timeout: .seconds(120)) {
                // Matched on the raw line: its "peer" field is not the probe's.
                $0.raw.contains("\"event\":\"completed\"")
            }
            #expect(done.raw.contains("\"route\":\"direct\""), "\(done.raw)")
            #expect(try await sender.waitForExit(timeout: .seconds(20)) == 0, "\(sender.transcript())")
            let saved = try await receiver.waitFor("the file", timeout: .seconds(20)) {
                $0.raw.contains("\"event\":\"file\"")
            }
            #expect(try await receiver.waitForExit(timeout: .seconds(20)) == 0, "\(receiver.transcript())")
            print(
                "lab: \(size) bytes, link down 9 s at >= \(size / 8), resumed from \(resumedFrom): \(size - resumedFrom) bytes sent after the resume"
            )
            #expect(resumedFrom >= size / 8)
            #expect(size - resumedFrom < size)
            let path = inbox.appendingPathComponent("film.bin")
            #expect(saved.raw.contains(path.path), "\(saved.raw)")
            #expect(try Data(contentsOf: path) == bytes)
        }
    }

    /// An integer field of a JSON line, 0 when absent.
    static func field(_ name: String, of line: String) -> Int {
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return object?[name] as? Int ?? 0
    }
}
