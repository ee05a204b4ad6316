import Foundation
import ParleyTesting
import Testing

/// `parley node` between network namespaces: real nodes, real avahi-daemons, direct links over
/// the lab's virtual Ethernet. The tests drive the nodes through their standard input and read
/// their `--json` lines with deadlines.
///
/// The suite uses a lab of its own (prefix `parleynode`, subnet 10.232.0.0/24), so it may run at
/// the same time as the discovery suite without the two touching each other's hosts.
@Suite(
    "LAN lab: parley node between network namespaces",
    .serialized,
    .enabled(if: Lab.isRoot, "LAN lab tests need root (network namespaces, bind mounts); skipped"),
    .timeLimit(.minutes(2))
)
struct NodeLabTests {
    @Test func twoNodesFindEachOtherAndTalkDirectly() async throws {
        try await NodeLab.with(hosts: 2) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha")
            let beta = try await lab.node("h2", data: data, name: "beta")

            let seen = try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }
            #expect(seen.name == "beta")
            // the first news of beta may be its link (no addresses yet) or its advertisement
            let address = "\(NodeLab.address("h2")):\(beta.port)"
            try await alpha.waitFor("beta at \(address)", timeout: .seconds(10)) {
                ["peerUp", "peerChanged"].contains($0.event) && $0.nodeID == beta.nodeID
                    && $0.addresses?.contains(address) == true
            }
            try await beta.waitFor("peerUp alpha", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == alpha.nodeID
            }

            let sent = try await alpha.command("send-node \(beta.nodeID) hello beta")
            #expect(sent.event == "sent", "\(sent)")
            #expect(sent.route == "direct", "\(sent)")
            let received = try await beta.waitFor("message from alpha") { $0.event == "message" }
            #expect(received.text == "hello beta")
            #expect(received.route == "direct")
            #expect(received.fromNode == alpha.nodeID)

            let answer = try await beta.command("send-node \(alpha.nodeID) hello alpha")
            #expect(answer.route == "direct", "\(answer)")
            let back = try await alpha.waitFor("message from beta") { $0.event == "message" }
            #expect(back.text == "hello alpha")
            #expect(back.fromNode == beta.nodeID)

            // the node answers commands it does not know without stopping
            let error = try await alpha.command("frobnicate")
            #expect(error.event == "error")
            let peers = try await alpha.command("peers")
            #expect(peers.peers?.contains { $0.nodeID == beta.nodeID } == true, "\(peers)")
        }
    }

    @Test func messageForAStoppedNodeIsQueuedAndDeliveredAfterItRestarts() async throws {
        try await NodeLab.with(hosts: 2) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha")
            let beta = try await lab.node("h2", data: data, name: "beta")
            try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }
            try await beta.waitFor("peerUp alpha", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == alpha.nodeID
            }

            try beta.process.send("quit")
            try await beta.waitFor("stopped") { $0.event == "stopped" }
            #expect(try await beta.process.waitForExit() == 0)
            try await alpha.waitFor("peerDown beta", timeout: .seconds(15)) {
                $0.event == "peerDown" && $0.nodeID == beta.nodeID
            }

            let first = try await alpha.command("send-node \(beta.nodeID) while you were away")
            #expect(first.route == "queued", "\(first)")
            let second = try await alpha.command("send-node \(beta.nodeID) and this too")
            #expect(second.route == "queued", "\(second)")

            let restarted = try await lab.node("h2", data: data, name: "beta")
            #expect(restarted.nodeID == beta.nodeID)  // the same key, so the same node
            let one = try await restarted.waitFor("first queued message", timeout: .seconds(30)) {
                $0.event == "message" && $0.text == "while you were away"
            }
            let two = try await restarted.waitFor("second queued message", timeout: .seconds(30)) {
                $0.event == "message" && $0.text == "and this too"
            }
            #expect(one.fromNode == alpha.nodeID)
            #expect(two.fromNode == alpha.nodeID)
            // in order, and each once
            let texts = restarted.process.lines.compactMap { NodeLine($0) }.filter { $0.event == "message" }.map(\.text)
            #expect(texts == ["while you were away", "and this too"])
        }
    }

    @Test func killedNodeIsReportedDownWithinFifteenSeconds() async throws {
        try await NodeLab.with(hosts: 2) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha")
            let beta = try await lab.node("h2", data: data, name: "beta")
            try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }
            try await beta.waitFor("peerUp alpha", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == alpha.nodeID
            }
            // a message makes sure the two are linked: a link's silence is what reveals a crash
            let sent = try await alpha.command("send-node \(beta.nodeID) are you there")
            #expect(sent.route == "direct", "\(sent)")
            try await beta.waitFor("message") { $0.event == "message" }

            let mark = alpha.process.lines.count
            let killedAt = ContinuousClock.now
            #expect(kill(beta.pid, SIGKILL) == 0)
            let down = try await alpha.waitFor("peerDown beta", from: mark, timeout: .seconds(15)) {
                $0.event == "peerDown" && $0.nodeID == beta.nodeID
            }
            print("timing: SIGKILL of the node on h2 -> peerDown on h1: \(seconds(down.arrived - killedAt))")
            #expect(down.arrived - killedAt < .seconds(15))
        }
    }

    /// A stopped process keeps its sockets open and its advertisement up: no FIN, no goodbye.
    /// Only the silence on the link can tell. With the default timers (2 s heartbeat, 6 s peer
    /// timeout, a 2 s redial) and with shorter ones.
    @Test(arguments: [[], ["--heartbeat", "1", "--peer-timeout", "4"]])
    func frozenNodeIsReportedDownByTheLinkHeartbeat(_ timers: [String]) async throws {
        try await NodeLab.with(hosts: 2) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha", timers)
            let beta = try await lab.node("h2", data: data, name: "beta", timers)
            try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }
            let sent = try await alpha.command("send-node \(beta.nodeID) are you there")
            #expect(sent.route == "direct", "\(sent)")
            try await beta.waitFor("message") { $0.event == "message" }

            let mark = alpha.process.lines.count
            let frozenAt = ContinuousClock.now
            #expect(kill(beta.pid, SIGSTOP) == 0)
            defer { kill(beta.pid, SIGKILL) }
            let down = try await alpha.waitFor("peerDown beta", from: mark, timeout: .seconds(20)) {
                $0.event == "peerDown" && $0.nodeID == beta.nodeID
            }
            let settings = timers.isEmpty ? "default timers" : timers.joined(separator: " ")
            print(
                "timing: SIGSTOP of the node on h2 -> peerDown on h1 (\(settings)): \(seconds(down.arrived - frozenAt))"
            )
            #expect(down.arrived - frozenAt < .seconds(timers.isEmpty ? 15 : 12))

            // a message to the frozen peer is not lost: it waits in the outbox
            let queued = try await alpha.command("send-node \(beta.nodeID) wake up")
            #expect(queued.route == "queued", "\(queued)")
        }
    }

    @Test func sendWithDataWaitsForTheRecipientsNodeAndSendsDirectly() async throws {
        try await NodeLab.with(hosts: 2) { lab, data in
            // peer to peer: the user IDs are claimed on the links, not logged on anywhere
            let beta = try await lab.node("h2", data: data, name: "beta", ["--user", "2002", "--password", "unused"])
            let output = try await lab.run(
                "h1",
                [
                    Lab.parley, "send", "--data", data.appendingPathComponent("alpha").path, "--name", "alpha",
                    "--user", "2001", "--password", "unused", "--to", "2002", "--wait", "10", "--json",
                    "hello from send --data",
                ]
            )
            let lines = output.split(separator: "\n").compactMap { NodeLine(json: String($0)) }
            let sent = try #require(lines.first { $0.event == "sent" }, "send --data printed: \(output)")
            #expect(sent.route == "direct", "\(sent)")
            let received = try await beta.waitFor("message") { $0.event == "message" }
            #expect(received.text == "hello from send --data")
            #expect(received.route == "direct")
        }
    }

    @Test func avahiBrowseAndParleyPeersSeeTheNode() async throws {
        try await NodeLab.with(hosts: 2) { lab, data in
            let alpha = try await lab.node("h1", data: data, name: "alpha")

            let deadline = ContinuousClock.now + .seconds(10)
            var resolved: String?
            while resolved == nil, ContinuousClock.now < deadline {
                // each run waits for avahi's "all for now" (about 1 s): a bounded retry, not a sleep
                let output = try await lab.run("h2", ["avahi-browse", "-rpt", "_parley._tcp"])
                resolved = output.split(separator: "\n").map(String.init).first {
                    $0.hasPrefix("=;eth0;IPv4;") && $0.contains(";\(NodeLab.address("h1"));")
                }
            }
            let line = try #require(resolved, "avahi-browse on h2 did not resolve the node on h1")
            let fields = line.split(separator: ";", maxSplits: 9, omittingEmptySubsequences: false).map(String.init)
            #expect(fields.count == 10)
            #expect(fields[4] == "_parley._tcp")
            #expect(fields[8] == "\(alpha.port)")
            let txt = fields.last ?? ""
            for entry in ["pv=1", "node=\(alpha.nodeID)"] {
                #expect(txt.contains("\"\(entry)\""), "TXT \(txt) lacks \(entry)")
            }

            // `parley peers` browses without publishing: it lists alpha, and alpha never sees it
            let output = try await lab.run("h2", [Lab.parley, "peers", "--json", "--timeout", "3"])
            let peers = output.split(separator: "\n").compactMap { NodeLine(json: String($0)) }
            let found = try #require(peers.first { $0.nodeID == alpha.nodeID }, "parley peers: \(output)")
            #expect(found.event == "peer")
            #expect(found.addresses == ["\(NodeLab.address("h1")):\(alpha.port)"])
            #expect(!alpha.process.lines.contains { $0.event == "peerUp" })
        }
    }
}

/// The lab the node tests use: apart from the discovery tests' lab (own prefix and subnet).
enum NodeLab {
    static let environment = ["PARLEYLAB_PREFIX": "parleynode", "PARLEYLAB_SUBNET": "10.232.0"]

    /// The address of a lab host: "h2" -> "10.232.0.2".
    static func address(_ host: String) -> String {
        "10.232.0.\(host.dropFirst())"
    }

    /// Brings up a lab of `hosts` hosts and a scratch directory for the nodes' data, runs
    /// `body`, and always tears both down. `environment` names the lab (another suite may run
    /// its own lab at the same time, with another prefix and subnet).
    static func with(
        hosts: Int,
        environment: [String: String] = environment,
        _ body: (LabSession, URL) async throws -> Void
    ) async throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("parley-nodelab-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        defer {
            do {
                try FileManager.default.removeItem(at: data)
            } catch {
                print("could not remove \(data.path): \(error)")
            }
        }
        try await Lab.run(["up", "\(hosts)"], environment: environment)
        let session = LabSession(environment: environment)
        do {
            try await body(session, data)
        } catch {
            session.dumpOutput()
            await session.stopAll()
            try await Lab.run(["down"], environment: environment)
            throw error
        }
        await session.stopAll()
        try await Lab.run(["down"], environment: environment)
    }
}

extension Lab {
    /// The `parley` executable: in the test binary's build folder, or `PARLEY_EXECUTABLE`.
    static let parley: String = {
        if let path = ProcessInfo.processInfo.environment["PARLEY_EXECUTABLE"] { return path }
        var directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {  // the test binary may sit inside a bundle folder on some layouts
            for name in ["parley", "ParleyCLI"] {
                let candidate = directory.appendingPathComponent(name)
                let isFile = (try? candidate.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true
                if isFile, FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
            }
            directory.deleteLastPathComponent()
        }
        return "parley"
    }()
}

/// A `parley node --json` running on a lab host.
struct LabNode: Sendable {
    let process: LabProcess
    let nodeID: String
    let port: Int
    let pid: pid_t

    /// The first line at index `from` or later that is a node JSON line matching `predicate`.
    @discardableResult
    func waitFor(
        _ what: String,
        from: Int = 0,
        timeout: Duration = .seconds(15),
        _ predicate: @escaping @Sendable (NodeLine) -> Bool
    ) async throws -> NodeLine {
        let line = try await process.waitFor(what, from: from, timeout: timeout) { line in
            NodeLine(line).map(predicate) ?? false
        }
        guard let decoded = NodeLine(line) else { throw WaitTimeout(description: "undecodable line \(line.raw)") }
        return decoded
    }

    /// Sends one command line and returns its answer (the next "sent", "whois", "peers", "status",
    /// "contact(s)", a command's reply or "error").
    func command(_ text: String, timeout: Duration = .seconds(20)) async throws -> NodeLine {
        let mark = process.lines.count
        try process.send(text)
        return try await waitFor("answer to \(text)", from: mark, timeout: timeout) {
            ["sent", "whois", "peers", "error", "commandReply", "handling", "status", "contact", "contacts"]
                .contains($0.event)
        }
    }
}

extension LabSession {
    /// Starts `parley node` on `host` with its data in `data/<name>`, and waits for "started".
    func node(_ host: String, data: URL, name: String, _ extra: [String] = []) async throws -> LabNode {
        let directory = data.appendingPathComponent(name).path
        let process = try start(
            host,
            [Lab.parley, "node", "--data", directory, "--name", name, "--json", "--log-level", "info"] + extra,
            name: "node \(name)@\(host)"
        )
        let started = try await process.waitFor("started") { $0.event == "started" }
        let line = try #require(NodeLine(started))
        let nodeID = try #require(line.nodeID)
        let port = try #require(line.port)
        let pid = try #require(line.pid)
        return LabNode(process: process, nodeID: nodeID, port: port, pid: pid_t(pid))
    }
}

/// A line of `parley node --json` (or `parley peers --json`), with the fields the tests read.
struct NodeLine: Decodable, Sendable, CustomStringConvertible {
    var event: String
    var nodeID: String?
    var name: String?
    var port: Int?
    var pid: Int?
    var userID: UInt32?
    var addresses: [String]?
    var linked: Bool?
    var route: String?
    var redelivered: Bool?
    var text: String?
    var fromNode: String?
    var id: UInt64?
    var messageID: UInt64?
    var message: String?
    var state: String?
    var reason: String?
    var peers: [NodeLine]?
    var contacts: [NodeLine]?
    var source: String?
    var cached: Bool?
    var arrived: ContinuousClock.Instant = .now
    var raw = ""

    private enum CodingKeys: String, CodingKey {
        case event, nodeID, name, port, pid, userID, addresses, linked, route, redelivered, text, fromNode, id
        case messageID, message
        case state, reason, peers, contacts, source, cached
    }

    init?(json: String) {
        guard json.first == "{", let decoded = try? JSONDecoder().decode(NodeLine.self, from: Data(json.utf8)) else {
            return nil
        }
        self = decoded
        raw = json
    }

    init?(_ line: ProbeLine) {
        self.init(json: line.raw)
        arrived = line.arrived
    }

    var description: String { raw }
}
