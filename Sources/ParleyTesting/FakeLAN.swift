public import ParleyDiscovery
import Synchronization

/// An in-memory LAN for unit-level wiring: every ``FakeDiscovery`` joined to it sees the others'
/// records as peers at 127.0.0.1 (the nodes' listeners are on loopback).
public final class FakeLAN: Sendable {
    private struct Member {
        var continuation: PeerEvents.Continuation
        var record: ServiceRecord?
    }

    private let members = Mutex<[ObjectIdentifier: Member]>([:])

    /// An empty LAN.
    public init() {}

    /// Adds `discovery`, which sees every record already published as a peer coming up.
    public func join(_ discovery: FakeDiscovery, continuation: PeerEvents.Continuation) {
        let existing = members.withLock { members in
            members[ObjectIdentifier(discovery)] = Member(continuation: continuation)
            return members.values.compactMap(\.record)
        }
        for record in existing { _ = continuation.yield(.up(Self.peer(record))) }
    }

    /// Publishes (or, with nil, withdraws) the record of `discovery` to the other members.
    public func publish(_ record: ServiceRecord?, from discovery: FakeDiscovery, previous: ServiceRecord?) {
        let others = members.withLock { members in
            members[ObjectIdentifier(discovery)]?.record = record
            return members.filter { $0.key != ObjectIdentifier(discovery) }.map(\.value.continuation)
        }
        for other in others {
            if let record {
                _ = other.yield(previous == nil ? .up(Self.peer(record)) : .changed(Self.peer(record)))
            } else if let previous {
                _ = other.yield(.down(previous.nodeID))
            }
        }
    }

    /// The peer other members see for `record`: at 127.0.0.1 on the loopback interface.
    public static func peer(_ record: ServiceRecord) -> Peer {
        Peer(
            nodeID: record.nodeID,
            userID: record.userID,
            userName: record.userName,
            server: record.server,
            status: record.status,
            addresses: [PeerAddress(host: "127.0.0.1", port: record.port, interface: "lo")],
            instanceName: record.instanceName
        )
    }
}

/// A ``Discovery`` on a ``FakeLAN``. With `lingers`, withdrawing leaves the record visible, as
/// mDNS does for a crashed (SIGKILLed) node.
public final class FakeDiscovery: Discovery {
    /// The peers of the LAN as they come, change and go.
    public let peerEvents: PeerEvents
    private let lan: FakeLAN
    private let lingers: Bool
    private let advertisedPort: UInt16?
    private let record = Mutex<ServiceRecord?>(nil)

    /// - Parameter advertisedPort: the port peers see instead of the node's own (a proxy's).
    /// Joins `lan`.
    public init(lan: FakeLAN, lingers: Bool = false, advertisedPort: UInt16? = nil) {
        self.lan = lan
        self.lingers = lingers
        self.advertisedPort = advertisedPort
        let (events, continuation) = PeerEvents.makeStream()
        peerEvents = events
        lan.join(self, continuation: continuation)
    }

    /// Publishes `record` (with the advertised port, when one was given).
    public func advertise(_ record: ServiceRecord) async throws(DiscoveryError) {
        var record = record
        if let advertisedPort { record.port = advertisedPort }
        let previous = self.record.withLock { current in
            defer { current = record }
            return current
        }
        lan.publish(record, from: self, previous: previous)
    }

    /// Publishes a changed record.
    public func update(_ record: ServiceRecord) async throws(DiscoveryError) {
        try await advertise(record)
    }

    /// Withdraws the record, unless the discovery lingers.
    public func withdraw() async {
        guard !lingers else { return }
        let previous = record.withLock { current in
            defer { current = nil }
            return current
        }
        lan.publish(nil, from: self, previous: previous)
    }
}
