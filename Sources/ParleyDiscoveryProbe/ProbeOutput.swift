import Foundation
import ParleyDiscovery
import Synchronization

/// One JSON object per line on standard output, written whole with write(2), so lines from the
/// event loop, the log handler and the command reader never interleave and are never buffered.
enum ProbeOutput {
    private static let lock = Mutex(())
    private static let start = ContinuousClock.now

    /// Milliseconds since the probe first asked (the start of `main`).
    static var elapsedMilliseconds: Double {
        let (seconds, attoseconds) = (ContinuousClock.now - start).components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    static func emit(_ fields: [String: Any]) {
        var fields = fields
        // + 0: never "-0"
        fields["ms"] = max(0, (elapsedMilliseconds * 10).rounded() / 10) + 0
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])
        else {
            write(Array("{\"event\":\"error\",\"message\":\"unencodable output\"}\n".utf8))
            return
        }
        write(Array(data) + [UInt8(ascii: "\n")])
    }

    static func emit(_ event: PeerEvent) {
        switch event {
        case .up(let peer): emit(["event": "up", "peer": json(peer)])
        case .changed(let peer): emit(["event": "changed", "peer": json(peer)])
        case .down(let nodeID): emit(["event": "down", "node": nodeID.description])
        }
    }

    static func json(_ peer: Peer) -> [String: Any] {
        var fields: [String: Any] = [
            "node": peer.nodeID.description,
            "instance": peer.instanceName,
            "pv": peer.recordVersion,
            "addresses": peer.addresses.map { ["host": $0.host, "port": Int($0.port), "interface": $0.interface] },
        ]
        if let userID = peer.userID { fields["uid"] = Int(userID) }
        if let userName = peer.userName { fields["name"] = userName }
        if let server = peer.server { fields["srv"] = server }
        if let status = peer.status { fields["st"] = status }
        return fields
    }

    private static func write(_ bytes: [UInt8]) {
        lock.withLock { _ in
            bytes.withUnsafeBufferPointer { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Foundation.write(1, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        return  // stdout gone: nothing useful left to do
                    }
                    offset += written
                }
            }
        }
    }
}
