import Foundation
import NIOCore
import NIOPosix
import ParleyCore
import ParleyNode
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct NodeStartTests {
    /// Two nodes on one data directory would share a node ID and an outbox: the second is
    /// refused while the first has not stopped, and a node may use the directory once it has.
    @Test func aSecondNodeOnTheSameDataDirectoryIsRefused() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let configuration = makeNodeConfiguration(dataDirectory: directory.subdirectory("ann"), name: "ann")
        let first = try ParleyNode(configuration: configuration, discovery: nil, logger: makeTestLogger("ann"))
        try await withRunningNode(first) { _ in
            let error = #expect(throws: ParleyError.self) {
                try ParleyNode(configuration: configuration, discovery: nil, logger: makeTestLogger("ann-2"))
            }
            #expect(error?.code == .storageError)
            #expect(error?.message.contains("is in use by another node") == true, "\(String(describing: error))")
            #expect(error?.message.contains("process \(getpid())") == true, "\(String(describing: error))")
        }
        // The first node has stopped: the directory is free again, with the same identity.
        let second = try ParleyNode(configuration: configuration, discovery: nil, logger: makeTestLogger("ann-2"))
        #expect(second.nodeID == first.nodeID)
    }

    /// A busy direct-link port is reported as such, by run() and by listeningPort, not as "the
    /// node stopped before it listened".
    @Test func aBusyListenPortSaysAddressInUse() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let busy = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        defer { busy.close(promise: nil) }
        var configuration = makeNodeConfiguration(dataDirectory: directory.subdirectory("ann"), name: "ann")
        configuration.listenPort = try #require(busy.localAddress?.port)
        let node = try ParleyNode(configuration: configuration, discovery: nil, logger: makeTestLogger("ann"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let error = await #expect(throws: ParleyError.self) { try await node.run() }
                #expect(error?.message.contains("address in use") == true, "\(String(describing: error))")
            }
            let error = await #expect(throws: ParleyError.self) { _ = try await node.listeningPort }
            #expect(error?.message.contains("address in use") == true, "\(String(describing: error))")
            #expect(error?.message.contains("port \(configuration.listenPort)") == true)
            try await group.waitForAll()
        }
    }
}
