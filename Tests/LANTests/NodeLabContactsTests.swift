import Foundation
import Testing

/// Contacts and presence on real nodes in the lab (docs/PROTOCOL.md section 23.4): the server's
/// presence while it runs; with the server stopped, the cached list and presence from the LAN
/// (the advertised status over avahi, and the link's liveness).
///
/// An extension of ``NodeLabTests``, so it runs serialized with the other tests of the suite
/// (they all share one lab).
extension NodeLabTests {
    @Test func contactPresenceComesFromTheServerThenFromTheLAN() async throws {
        try await NodeLab.with(hosts: 3) { lab, data in
            let (server, alpha, _, beta, betaUser) = try await lab.serverAndTwoUserNodes(data: data)
            let added = try await alpha.command("contact-add \(betaUser)")
            #expect(added.event == "contact", "\(added)")
            try await alpha.waitFor("beta online, from the server", timeout: .seconds(10)) {
                $0.event == "presence" && $0.userID == betaUser && $0.state == "online" && $0.source == "server"
            }
            try await alpha.waitFor("peerUp beta", timeout: .seconds(10)) {
                $0.event == "peerUp" && $0.nodeID == beta.nodeID
            }

            let status = try await beta.command("presence away at lunch")
            #expect(status.event == "status", "\(status)")
            try await alpha.waitFor("beta away, from the server", timeout: .seconds(10)) {
                $0.event == "presence" && $0.userID == betaUser && $0.state == "away" && $0.text == "at lunch"
                    && $0.source == "server"
            }

            // The server stops: the same state, now from beta's advertisement on the LAN.
            let stopped = ContinuousClock.now
            server.process.terminate()
            #expect(try await server.process.waitForExit() == 0)
            let lan = try await alpha.waitFor("beta away, from the LAN", timeout: .seconds(15)) {
                $0.event == "presence" && $0.userID == betaUser && $0.state == "away" && $0.text == "at lunch"
                    && $0.source == "lan"
            }
            print("timing: server stopped -> presence from the LAN after \(seconds(stopped.duration(to: lan.arrived)))")
            let contacts = try await alpha.command("contacts")
            #expect(contacts.cached == true, "\(contacts)")
            #expect(contacts.contacts?.map(\.userID) == [betaUser], "\(contacts)")
            #expect(contacts.contacts?.first?.source == "lan", "\(contacts)")

            // A status change travels over mDNS alone.
            _ = try await beta.command("presence busy")
            try await alpha.waitFor("beta busy, from the LAN", timeout: .seconds(15)) {
                $0.event == "presence" && $0.userID == betaUser && $0.state == "busy" && $0.source == "lan"
            }

            // kill -9 of beta: its advertisement lingers, its link resets: offline at once. (A
            // message first makes sure the two are linked: a link's end is what reveals a crash.)
            let sent = try await alpha.command("send-node \(beta.nodeID) are you there")
            #expect(sent.route == "direct", "\(sent)")
            try await beta.waitFor("message") { $0.event == "message" }
            let killed = ContinuousClock.now
            #expect(kill(beta.pid, SIGKILL) == 0)
            let offline = try await alpha.waitFor("beta offline, from the LAN", timeout: .seconds(20)) {
                $0.event == "presence" && $0.userID == betaUser && $0.state == "offline" && $0.source == "lan"
            }
            print("timing: kill -9 -> contact offline (LAN) after \(seconds(killed.duration(to: offline.arrived)))")
        }
    }
}
