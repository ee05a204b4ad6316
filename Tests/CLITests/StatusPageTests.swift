import Foundation
import Testing

import class ParleyTesting.SpawnedProcess

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `parley server --metrics-address`: /metrics moves with the traffic, /status answers JSON, and
/// the HTML status page shows the server's state in a real browser (Debian's chromium, headless).
@Suite("status page and metrics", .serialized, .timeLimit(.minutes(3)))
struct StatusPageTests {
    private func get(_ url: String) async throws -> String {
        let (data, response) = try await URLSession.shared.data(from: try #require(URL(string: url)))
        #expect((response as? HTTPURLResponse)?.statusCode == 200, "\(url)")
        return String(decoding: data, as: UTF8.self)
    }

    /// The value of an unlabelled (or exactly labelled) sample in Prometheus text.
    private func sample(_ name: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1))
        }
        return nil
    }

    @Test("/metrics counters move when messages flow; /status and the HTML page show the state")
    func metricsAndStatusPage() async throws {
        try await withDataDirectory { directory in
            let server = try await TestServer.start(dataDirectory: directory, ["--metrics-address", "127.0.0.1:0"])
            defer { server.process.signal(SIGTERM) }
            let metricsLine = try await server.process.line { $0.hasPrefix("metrics on ") }
            let base = String(metricsLine.dropFirst("metrics on ".count))
            let environment = ["PARLEY_SERVER": server.address, "PARLEY_SERVER_FINGERPRINT": server.fingerprint]

            let before = try await get(base + "/metrics")
            #expect(sample("parley_messages_received_total", in: before) == 0, "\(before)")
            #expect(before.contains("process_resident_memory_bytes"), "\(before)")

            let ann = try await parley(["register", "--name", "ann", "--password", "pw"], environment: environment)
            let bob = try await parley(["register", "--name", "bob", "--password", "pw"], environment: environment)
            let annID = try #require(ann.lines.first)
            let bobID = try #require(bob.lines.first)
            for index in 1...3 {
                let sent = try await parley(
                    ["send", "--user", annID, "--password", "pw", "--to", bobID, "message \(index)"],
                    environment: environment
                )
                #expect(sent.status == 0, "\(sent)")
            }
            let received = try await parley(
                ["receive", "--user", bobID, "--password", "pw", "--count", "3", "--timeout", "20"],
                environment: environment
            )
            #expect(received.status == 0, "\(received)")
            // Bob stays online while the page is looked at.
            let online = try ChildProcess(
                ["receive", "--user", bobID, "--password", "pw", "--timeout", "60", "--json"],
                environment: environment
            )
            defer { online.signal(SIGTERM) }
            try await online.line { $0.contains("\"loggedOn\"") }

            let after = try await get(base + "/metrics")
            #expect(sample("parley_messages_received_total", in: after) == 3, "\(after)")
            #expect(sample("parley_messages_stored_total", in: after) == 3, "\(after)")
            #expect(sample("parley_messages_delivered_total", in: after) == 3, "\(after)")
            #expect(sample("parley_messages_acknowledged_total", in: after) == 3, "\(after)")
            #expect(sample("parley_sessions_online", in: after) == 1, "\(after)")
            #expect((sample("parley_logons_total{result=\"success\"}", in: after) ?? 0) >= 5, "\(after)")
            #expect((sample("parley_tls_handshakes_total{result=\"success\"}", in: after) ?? 0) >= 7, "\(after)")
            #expect((sample("parley_store_commit_batch_size_count", in: after) ?? 0) >= 1, "\(after)")
            #expect(!after.contains(annID) && !after.contains(bobID), "no per-user labels: \(after)")

            let status = try JSONSerialization.jsonObject(with: Data(try await get(base + "/status").utf8))
            let fields = try #require(status as? [String: Any])
            #expect(fields["sessionsOnline"] as? Int == 1)
            #expect(fields["onlineUsers"] as? [Int] == [Int(bobID)!])
            #expect((fields["messages"] as? [String: Int])?["delivered"] == 3)
            #expect((fields["settings"] as? [String: Any])?["tlsFingerprint"] as? String == server.fingerprint)

            // The page in a real browser, after its script has refreshed it twice.
            let page = try await Chromium.dumpDOM(base + "/", waitingMilliseconds: 5000)
            #expect(page.contains("Parley server"), "\(page)")
            #expect(page.contains("<td class=\"number\" id=\"sessions\">1</td>"), "\(page)")
            #expect(page.contains("<td class=\"number\" id=\"delivered\">3</td>"), "\(page)")
            #expect(page.contains("<li>\(bobID)</li>"), "\(page)")
            #expect(page.contains(server.fingerprint), "\(page)")
            // The script computed rates (the server renders "-" until a second refresh).
            #expect(page.contains("id=\"received-rate\">0.0</td>"), "\(page)")
        }
    }
}

@Test("--log-format json writes one JSON object per log record")
func jsonLogs() async throws {
    try await withDataDirectory { directory in
        let server = try await TestServer.start(dataDirectory: directory, ["--log-format", "json"])
        #expect(try await server.stop() == .exit(0))
        let lines = server.process.errorOutput.split(separator: "\n")
        #expect(lines.count >= 3, "\(server.process.errorOutput)")
        for line in lines {
            let record = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(record?["level"] is String && record?["message"] is String, "\(line)")
            #expect((record?["time"] as? String)?.hasSuffix("Z") == true, "\(line)")
        }
        #expect(lines.contains { $0.contains("\"message\":\"listening\"") }, "\(server.process.errorOutput)")
    }
}

/// Debian's chromium, headless.
enum Chromium {
    static func dumpDOM(_ url: String, waitingMilliseconds: Int) async throws -> String {
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("parley-chromium-\(UUID())")
        defer { try? FileManager.default.removeItem(at: profile) }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else {
            throw TestFailure("chromium is missing: ./scripts/deps.sh installs it")
        }
        let arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile.path)",
            "--virtual-time-budget=\(waitingMilliseconds)", "--dump-dom", url,
        ]
        return try await SpawnedProcess.run("/usr/bin/chromium", arguments, timeout: .seconds(120)).output
    }
}
