import ArgumentParser
import Foundation
import Logging
import ParleyAvahi
import ParleyCore
import ParleyDiscovery

/// `parley peers`: lists the Parley nodes on the LAN, as Avahi sees them, without publishing.
struct PeersCommand: AsyncParsableCommand, LoggingCommand {
    static let configuration = CommandConfiguration(
        commandName: "peers",
        abstract: "List the Parley nodes on the LAN (browses for --timeout seconds; does not publish).",
        discussion: """
            One line per node, sorted by user then node ID: "USER NAME node NODE_ID at ADDRESSES \
            [STATUS]" (with --json {"event":"peer","nodeID":...,"userID":...,"name":...,\
            "instance":...,"server":...,"status":...,"addresses":["HOST:PORT",...]}). Prints \
            "no Parley nodes found" (nothing with --json) when there are none. Needs avahi-daemon \
            and D-Bus: when it cannot reach them by the end of --timeout it says why and exits 1.
            """
    )
    static let defaultLogLevel = Logger.Level.warning

    @OptionGroup var output: OutputOptions

    @Option(help: "How many seconds to browse.")
    var timeout: Double = 2

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        let out = Output(json: output.json)
        // Nothing is advertised, so no node has this ID: every node found is listed.
        let ownID = NodeID(digest: (0..<NodeID.digestLength).map { _ in UInt8.random(in: 0...255) })!
        let discovery: AvahiDiscovery
        do {
            discovery = try AvahiDiscovery(
                configuration: .init(ownNodeID: ownID),
                logger: Logger(label: "parley.peers")
            )
        } catch {
            throw CommandFailure(message: "cannot set up LAN discovery: \(error)")
        }
        let timeout = self.timeout
        var found: [NodeID: Peer] = [:]
        // What kept discovery from looking, as the timer saw it before the shutdown (which ends
        // the session it comes from).
        let unavailability = try await withThrowingTaskGroup(of: DiscoveryError?.self) { group in
            group.addTask {
                try await discovery.run()
                return nil
            }
            group.addTask {
                // Cancelled only when the command fails; either way browsing ends here.
                try? await Task.sleep(for: .seconds(timeout))
                let unavailability = discovery.unavailability
                discovery.shutDown()
                return unavailability
            }
            // Ends once run() has shut down.
            for await event in discovery.peerEvents {
                switch event {
                case .up(let peer), .changed(let peer): found[peer.nodeID] = peer
                case .down(let nodeID): found[nodeID] = nil
                }
            }
            var unavailability: DiscoveryError?
            for try await result in group where result != nil { unavailability = result }
            return unavailability
        }
        // "No nodes" would be a lie when nobody could look.
        if let unavailability {
            throw CommandFailure(
                message: "cannot browse the LAN: \(unavailability.message) (avahi-daemon and the system D-Bus must run)"
            )
        }
        let records = found.values.map(PeerRecord.init).sorted {
            ($0.userID ?? .max, $0.nodeID) < ($1.userID ?? .max, $1.nodeID)
        }
        if records.isEmpty && !out.isJSON {
            try out.line("no Parley nodes found")
        }
        for record in records {
            try out.emit(record, text: record.line)
        }
    }
}

/// A node found on the LAN, as `peers` prints it.
struct PeerRecord: Encodable {
    var event = "peer"
    var nodeID: String
    var userID: UInt32?
    var name: String?
    var instance: String
    var server: String?
    var status: String?
    var addresses: [String]

    init(_ peer: Peer) {
        nodeID = peer.nodeID.description
        userID = peer.userID
        name = peer.userName
        instance = peer.instanceName
        server = peer.server
        status = peer.status
        addresses = peer.addresses.map(\.description)
    }

    /// "1001 alice node 3kq... at 10.231.0.2:40123 [online]"
    var line: String {
        var text = "\(userID.map(String.init) ?? "-") \(name ?? instance) node \(nodeID) at "
        text += addresses.joined(separator: ", ")
        if let status, !status.isEmpty { text += " [\(status)]" }
        return text
    }
}
