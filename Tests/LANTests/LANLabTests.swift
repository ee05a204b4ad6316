import Foundation
import ParleyTesting
import Testing

/// AvahiDiscovery between real avahi-daemons: `scripts/lan-lab.sh` builds hosts h1...hN (network
/// namespaces on one bridge, each with its own D-Bus and avahi-daemon) and the tests run
/// `parley-discovery-probe` inside them, reading its JSON lines with deadlines.
/// Each test brings the lab up and tears it down; the suite is serialized (one lab at a time).
@Suite(
    "LAN lab: discovery between network namespaces",
    .serialized,
    .enabled(if: Lab.isRoot, "LAN lab tests need root (network namespaces, bind mounts); skipped"),
    .timeLimit(.minutes(2))
)
struct LANLabTests {
    private static let nodeArguments = [
        "--node", Lab.nodeID("n1"), "--instance", "alice's node", "--port", "7001", "--uid", "42",
        "--user", "Alice Example", "--server", "srv-1", "--status", "online",
    ]

    /// Prints a measured duration in the test log (the numbers the project reports).
    private func report(_ what: String, _ duration: Duration) {
        print("timing: \(what): \(seconds(duration))")
    }

    @Test func peerOnAnotherHostSeesTheNodeWithItsTXTFields() async throws {
        try await Lab.with(hosts: 2) { lab in
            let observer = try lab.probe("h2", ["--node", Lab.nodeID("n2"), "--instance", "observer"])
            try await observer.waitFor("advertised") { $0.isAdvertised }

            let launched = ContinuousClock.now
            let node = try lab.probe("h1", Self.nodeArguments)
            let advertised = try await node.waitFor("advertised") { $0.isAdvertised }
            let up = try await observer.waitFor("up n1", timeout: .seconds(10)) { $0.isPeer("up", "n1") }
            report("h1 probe launched -> up on h2", up.arrived - launched)
            report("h1 service established -> up on h2", up.arrived - advertised.arrived)
            #expect(up.arrived - launched < .seconds(5))

            let peer = try #require(up.peer)
            #expect(peer.uid == 42)
            #expect(peer.name == "Alice Example")
            #expect(peer.srv == "srv-1")
            #expect(peer.st == "online")
            #expect(peer.pv == 1)
            #expect(peer.instance == "alice's node")
            #expect(peer.addresses == [.init(host: "10.231.0.1", port: 7001, interface: "eth0")])

            // both ways, and nobody reports itself
            try await node.waitFor("up n2") { $0.isPeer("up", "n2") }
            #expect(!observer.lines.contains { $0.eventNode == Lab.nodeID("n2") })
            #expect(!node.lines.contains { $0.eventNode == Lab.nodeID("n1") })

            // a TXT update arrives as .changed
            let mark = observer.lines.count
            let sent = ContinuousClock.now
            try node.send("status away")
            let changed = try await observer.waitFor("changed n1", from: mark) { $0.isPeer("changed", "n1") }
            report("status update on h1 -> changed on h2", changed.arrived - sent)
            #expect(changed.peer?.st == "away")
            #expect(changed.peer?.uid == 42)
        }
    }

    @Test func gracefulStopGivesDownOnTheOtherHost() async throws {
        try await Lab.with(hosts: 2) { lab in
            let observer = try lab.probe("h2", ["--node", Lab.nodeID("n2")])
            let node = try lab.probe("h1", ["--node", Lab.nodeID("n1")])
            try await observer.waitFor("up n1") { $0.isPeer("up", "n1") }

            let stoppedAt = ContinuousClock.now
            node.terminate()
            try await node.waitFor("stopped") { $0.event == "stopped" }
            #expect(try await node.waitForExit() == 0)
            let down = try await observer.waitFor("down n1", timeout: .seconds(10)) { $0.isPeer("down", "n1") }
            report("SIGTERM of h1 probe -> down on h2", down.arrived - stoppedAt)
            #expect(down.arrived - stoppedAt < .seconds(5))
        }
    }

    @Test func sameInstanceNameOnTwoHostsGivesTwoDistinctPeers() async throws {
        try await Lab.with(hosts: 3) { lab in
            let observer = try lab.probe("h3", ["--node", Lab.nodeID("n3")])
            let first = try lab.probe("h1", ["--node", Lab.nodeID("a"), "--instance", "parley node"])
            try await first.waitFor("advertised") { $0.isAdvertised }
            let second = try lab.probe("h2", ["--node", Lab.nodeID("b"), "--instance", "parley node"])
            // The newcomer normally loses the name (mDNS probing finds the first's record); on a
            // loaded machine their announcements can cross and the first renames instead. Either
            // way exactly one renames, to "parley node #2", and the observer ends with two peers.
            let renameMessage = "instance name collision; renamed"
            try await eventually("one of the two probes renames") {
                [first, second].contains { $0.lines.contains { $0.message == renameMessage } }
            }
            let newcomerRenamed = second.lines.contains { $0.message == renameMessage }
            let (renamed, kept) = newcomerRenamed ? (second, first) : (first, second)
            let (renamedNode, keptNode) = newcomerRenamed ? ("b", "a") : ("a", "b")
            let rename = try #require(renamed.lines.first { $0.message == renameMessage })
            #expect(rename.metadata?["discovery.to"] == "parley node #2")
            try await renamed.waitFor("advertised as #2") {
                $0.isAdvertised && $0.metadata?["discovery.instance"] == "parley node #2"
            }

            let upRenamed = try await observer.waitFor("\(renamedNode) as #2") {
                ($0.isPeer("up", renamedNode) || $0.isPeer("changed", renamedNode))
                    && $0.peer?.instance == "parley node #2"
            }
            let upKept = try await observer.waitFor("up \(keptNode)") { $0.isPeer("up", keptNode) }
            #expect(upKept.peer?.instance == "parley node")
            let hosts: [String: String] = ["a": "10.231.0.1", "b": "10.231.0.2"]
            #expect(upRenamed.peer?.addresses.map(\.host) == hosts[renamedNode].map { [$0] })
            #expect(upKept.peer?.addresses.map(\.host) == hosts[keptNode].map { [$0] })
            try await first.waitFor("up b") { $0.isPeer("up", "b") }
            try await second.waitFor("up a") { $0.isPeer("up", "a") }
            #expect(observer.lines.filter { $0.event == "up" }.count == 2)
            #expect(!kept.lines.contains { $0.message == renameMessage })
            if newcomerRenamed {
                // The usual case: nobody's view changed after the names settled.
                #expect(!observer.lines.contains { $0.event == "changed" || $0.event == "down" })
            }
        }
    }

    @Test func daemonAbsentAtStartWarnsOnceThenDiscoversWhenItStarts() async throws {
        try await Lab.with(hosts: 2) { lab in
            try await lab.avahi("h2", "stop")
            let other = try lab.probe("h1", ["--node", Lab.nodeID("a")])
            try await other.waitFor("advertised") { $0.isAdvertised }

            let node = try lab.probe("h2", ["--node", Lab.nodeID("b")])
            let warning = try await node.waitFor("warning") { $0.isWarning }
            #expect(warning.metadata?["discovery.error"]?.contains("not running") == true)

            let startedAt = ContinuousClock.now
            try await lab.avahi("h2", "start")
            let daemonReady = ContinuousClock.now
            let up = try await node.waitFor("up a", timeout: .seconds(10)) { $0.isPeer("up", "a") }
            report(
                "avahi start on h2 (ready after \(seconds(daemonReady - startedAt))) -> up on h2",
                up.arrived - daemonReady)
            try await other.waitFor("up b") { $0.isPeer("up", "b") }
            try await node.waitFor("available") { $0.message?.hasPrefix("LAN discovery available") == true }
            #expect(node.lines.filter(\.isWarning).count == 1)
        }
    }

    @Test func noDBusAtStartWarnsOnceRetriesAndDiscoversWhenTheBusAppears() async throws {
        try await Lab.with(hosts: 2) { lab in
            let bus = try await lab.busAddress("h2")
            let socket = try #require(bus.split(separator: "=", maxSplits: 1).last.map(String.init))
            let late = URL(fileURLWithPath: socket).deletingLastPathComponent().appendingPathComponent("late.sock")
            let other = try lab.probe("h1", ["--node", Lab.nodeID("a")])
            let node = try lab.probe(
                "h2", ["--node", Lab.nodeID("b"), "--retry", "0.2", "--log-level", "debug"],
                prefix: ["env", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=\(late.path)"])
            try await node.waitFor("warning") { $0.isWarning }
            // it keeps retrying quietly: two retries at debug level, no second warning
            let retry = try await node.waitFor("retry") { $0.message == "LAN discovery still unavailable" }
            let afterRetry = try #require(node.lines.firstIndex { $0.raw == retry.raw }) + 1
            try await node.waitFor("second retry", from: afterRetry) { $0.message == "LAN discovery still unavailable" }

            let busAt = ContinuousClock.now
            try FileManager.default.createSymbolicLink(atPath: late.path, withDestinationPath: socket)
            let up = try await node.waitFor("up a", timeout: .seconds(10)) { $0.isPeer("up", "a") }
            report("D-Bus appears on h2 (retry 0.2 s doubling) -> up on h2", up.arrived - busAt)
            try await other.waitFor("up b") { $0.isPeer("up", "b") }
            #expect(node.lines.filter(\.isWarning).count == 1)
        }
    }

    @Test func daemonRestartRepublishesAndPeersComeBack() async throws {
        try await Lab.with(hosts: 2) { lab in
            let node = try lab.probe("h1", ["--node", Lab.nodeID("a")])
            let observer = try lab.probe("h2", ["--node", Lab.nodeID("b")])
            try await observer.waitFor("up a") { $0.isPeer("up", "a") }
            try await node.waitFor("up b") { $0.isPeer("up", "b") }

            let markNode = node.lines.count
            let markObserver = observer.lines.count
            try await lab.avahi("h1", "stop")
            try await observer.waitFor("down a", from: markObserver) { $0.isPeer("down", "a") }
            try await node.waitFor("warning", from: markNode) { $0.isWarning }

            try await lab.avahi("h1", "start")
            let daemonReady = ContinuousClock.now
            let up = try await observer.waitFor("up a again", from: markObserver) { $0.isPeer("up", "a") }
            report("avahi restart on h1 -> up again on h2", up.arrived - daemonReady)
            try await node.waitFor("advertised again", from: markNode) { $0.isAdvertised }

            // browsing resumed too: a node that appears now is seen
            let newcomer = try lab.probe("h2", ["--node", Lab.nodeID("c")])
            try await node.waitFor("up c", from: markNode) { $0.isPeer("up", "c") }
            try await newcomer.waitFor("up a") { $0.isPeer("up", "a") }
            // b was never lost from a's point of view: confirmed again after the reconnect
            #expect(!node.lines.contains { $0.isPeer("down", "b") })
            #expect(node.lines.filter(\.isWarning).count == 1)
        }
    }

    @Test func daemonKilledAndRestartedRepublishesAndBrowsesAgain() async throws {
        try await Lab.with(hosts: 2) { lab in
            let node = try lab.probe("h1", ["--node", Lab.nodeID("a")])
            let observer = try lab.probe("h2", ["--node", Lab.nodeID("b")])
            try await observer.waitFor("up a") { $0.isPeer("up", "a") }

            let markNode = node.lines.count
            try await lab.avahi("h1", "kill")
            let warning = try await node.waitFor("warning", from: markNode) { $0.isWarning }
            #expect(warning.metadata?["discovery.error"]?.contains("-23") == true)  // AVAHI_ERR_DISCONNECTED
            try await lab.avahi("h1", "start")
            try await node.waitFor("advertised again", from: markNode) { $0.isAdvertised }

            // h2's daemon still caches a's old records: restart it so only a fresh
            // announcement from h1 can make h2 see a
            let markObserver = observer.lines.count
            try await lab.avahi("h2", "stop")
            try await lab.avahi("h2", "start")
            try await observer.waitFor("advertised again", from: markObserver) { $0.isAdvertised }
            let fresh = try lab.probe("h2", ["--node", Lab.nodeID("d")])
            try await fresh.waitFor("up a") { $0.isPeer("up", "a") }
            try await node.waitFor("up d") { $0.isPeer("up", "d") }
        }
    }

    @Test func avahiBrowseSeesTheProbeWithItsTXTKeys() async throws {
        try await Lab.with(hosts: 2) { lab in
            let node = try lab.probe("h1", Self.nodeArguments)
            try await node.waitFor("advertised") { $0.isAdvertised }

            let deadline = ContinuousClock.now + .seconds(10)
            var resolved: String?
            while resolved == nil, ContinuousClock.now < deadline {
                // each run waits for avahi's "all for now" (about 1 s): a bounded retry, not a sleep
                let output = try await lab.run("h2", ["avahi-browse", "-rpt", "_parley._tcp"])
                resolved = output.split(separator: "\n").map(String.init).first {
                    $0.hasPrefix("=;eth0;IPv4;") && $0.contains(";10.231.0.1;")
                }
            }
            let line = try #require(resolved, "avahi-browse on h2 did not resolve the probe on h1")
            let fields = line.split(separator: ";", maxSplits: 9, omittingEmptySubsequences: false).map(String.init)
            #expect(fields.count == 10)
            #expect(fields[3] == "alice\\039s\\032node")  // avahi-browse -p escapes ' and space
            #expect(fields[4] == "_parley._tcp")
            #expect(fields[6] == "h1.local")
            #expect(fields[8] == "7001")
            let txt = fields.last ?? ""
            for entry in ["pv=1", "node=\(Lab.nodeID("n1"))", "uid=42", "name=Alice Example", "srv=srv-1", "st=online"]
            {
                #expect(txt.contains("\"\(entry)\""), "TXT \(txt) lacks \(entry)")
            }
        }
    }

    @Test func probeFindsAServicePublishedWithAvahiPublishService() async throws {
        try await Lab.with(hosts: 2) { lab in
            let node = try lab.probe("h1", ["--node", Lab.nodeID("a")])
            try await node.waitFor("advertised") { $0.isAdvertised }

            // not Parley records, one whose node is not a node ID, and one that claims to be node a
            // itself: all must be ignored
            let ignored = [
                ["garbage one", "7101", "foo=bar", "node"],
                ["garbage two", "7102", "pv=1"],
                ["garbage three", "7103", "pv=x", "node=\(Lab.nodeID("zz"))"],
                ["not a node ID", "7105", "pv=1", "node=ext-1"],
                ["spoof of a", "7104", "pv=1", "node=\(Lab.nodeID("a"))"],
            ]
            for service in ignored {
                let publisher = try lab.start(
                    "h2", ["avahi-publish-service", "-s", service[0], "_parley._tcp"] + service.dropFirst(),
                    name: service[0])
                try await publisher.waitFor("established") { $0.raw.hasPrefix("Established under name") }
            }
            let external = try lab.start(
                "h2",
                [
                    "avahi-publish-service", "-s", "external node", "_parley._tcp", "7100",
                    "pv=1", "node=\(Lab.nodeID("ext-1"))", "uid=7", "name=Bob", "srv=s9", "st=busy",
                ],
                name: "external")
            let up = try await node.waitFor("up ext-1") { $0.isPeer("up", "ext-1") }
            let peer = try #require(up.peer)
            #expect(peer.uid == 7)
            #expect(peer.name == "Bob")
            #expect(peer.srv == "s9")
            #expect(peer.st == "busy")
            #expect(peer.instance == "external node")
            #expect(peer.addresses == [.init(host: "10.231.0.2", port: 7100, interface: "eth0")])

            external.terminate()
            try await node.waitFor("down ext-1") { $0.isPeer("down", "ext-1") }
            #expect(node.lines.compactMap { $0.event == "up" ? $0.eventNode : nil } == [Lab.nodeID("ext-1")])
        }
    }

    @Test func ipv6LinkLocalAddressesKeepTheirScopeAndMergeIntoOnePeer() async throws {
        try await Lab.with(hosts: 2, ipv6: "ll") { lab in
            let node = try lab.probe("h1", ["--node", Lab.nodeID("a"), "--port", "7000"])
            let observer = try lab.probe("h2", ["--node", Lab.nodeID("b")])
            let both = try await observer.waitFor("a over IPv4 and scoped IPv6") { line in
                guard line.isPeer("up", "a") || line.isPeer("changed", "a"),
                    let hosts = line.peer?.addresses.map(\.host)
                else { return false }
                return hosts.contains("10.231.0.1") && hosts.contains { $0.hasPrefix("fe80:") && $0.hasSuffix("%eth0") }
            }
            #expect(observer.lines.filter { $0.isPeer("up", "a") }.count == 1)
            #expect(both.peer?.addresses.count == 2)
            withExtendedLifetime(node) {}

            // the scoped address works as it is: connect to it from h2
            let host = try #require(both.peer?.addresses.first { $0.host.hasPrefix("fe80:") }?.host)
            let listener = try lab.start(
                "h1",
                [
                    "python3", "-u", "-c",
                    "import socket\ns = socket.socket(socket.AF_INET6)\n"
                        + "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('::', 7000))\n"
                        + "s.listen()\nprint('listening')\nc, _ = s.accept()\nprint('accepted')\n",
                ],
                name: "listener")
            try await listener.waitFor("listening") { $0.raw == "listening" }
            let output = try await lab.run(
                "h2",
                [
                    "python3", "-c",
                    "import socket, sys\nsocket.create_connection((sys.argv[1], 7000), timeout=3).close()\n"
                        + "print('connected')\n",
                    host,
                ])
            #expect(output.contains("connected"))
            try await listener.waitFor("accepted") { $0.raw == "accepted" }
        }
    }

    @Test func sameNodeOnTwoInterfacesIsOnePeerWithBothAddresses() async throws {
        try await Lab.with(hosts: 2, nics: 2) { lab in
            let eth0 = ProbeLine.Address(host: "10.231.0.1", port: 7000, interface: "eth0")
            let eth1 = ProbeLine.Address(host: "10.241.0.1", port: 7000, interface: "eth1")
            let node = try lab.probe("h1", ["--node", Lab.nodeID("a"), "--port", "7000", "--status", "online"])
            let observer = try lab.probe("h2", ["--node", Lab.nodeID("b")])
            // the browser reports the service once per interface: up with one address, then
            // changed with both (or up with both, if both resolve before the first event)
            let both = try await observer.waitFor("a on eth0 and eth1") { line in
                (line.isPeer("up", "a") || line.isPeer("changed", "a")) && line.peer?.addresses == [eth0, eth1]
            }
            #expect(observer.lines.filter { $0.isPeer("up", "a") }.count == 1)
            #expect(both.peer?.instance == "parley \(Lab.nodeID("a"))")

            // h1's eth0 goes down: no goodbye can cross a down link, so h2 keeps the eth0 records
            // cached until their TTL (120 s) and nothing changes; the peer stays up. A TXT update
            // (announced on eth1 only) proves h2 still hears a, and that no down came before it.
            try await lab.link("h1", "eth0", up: false)
            var mark = observer.lines.count
            try node.send("status away")
            let away = try await observer.waitFor("changed a (st=away) over eth1", from: mark) {
                $0.isPeer("changed", "a") && $0.peer?.st == "away"
            }
            #expect(away.peer?.addresses.contains(eth1) == true)

            // h2's eth0 goes down: h2's daemon drops that interface and its cache, the browser
            // removes the eth0 instance, and the peer stays up with the eth1 address alone
            mark = observer.lines.count
            try await lab.link("h2", "eth0", up: false)
            let eth1Only = try await observer.waitFor("changed a (eth1 only)", from: mark) { $0.isPeer("changed", "a") }
            #expect(eth1Only.peer?.addresses == [eth1])
            #expect(eth1Only.peer?.st == "away")

            // both eth0 back: both addresses again, with the current TXT (not the stale one)
            mark = observer.lines.count
            try await lab.link("h1", "eth0", up: true)
            try await lab.link("h2", "eth0", up: true)
            let again = try await observer.waitFor("changed a (both again)", from: mark) {
                $0.isPeer("changed", "a") && $0.peer?.addresses == [eth0, eth1]
            }
            #expect(again.peer?.st == "away")
            #expect(!observer.lines.contains { $0.isPeer("down", "a") })
            #expect(observer.lines.filter { $0.isPeer("up", "a") }.count == 1)

            // the last interface that carried it goes: then, and only then, a is down
            mark = observer.lines.count
            try await lab.link("h2", "eth0", up: false)
            try await observer.waitFor("changed a (eth1 only, again)", from: mark) {
                $0.isPeer("changed", "a") && $0.peer?.addresses == [eth1]
            }
            try await lab.link("h2", "eth1", up: false)
            try await observer.waitFor("down a", from: mark) { $0.isPeer("down", "a") }
        }
    }
}
