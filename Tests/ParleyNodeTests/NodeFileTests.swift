import Foundation
import ParleyClient
import ParleyCore
import ParleyNode
import ParleyTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct NodeFileTests {
    /// A node sends a file to another node's user through the server; the receiving node is
    /// offered it as an event, saves it, and the sender is told it arrived.
    @Test func aFileBetweenTwoNodesThroughTheServer() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let lan = FakeLAN()
        try await withServer(dataDirectory: directory.subdirectory("server")) { _, configuration in
            let users = try await registerUsers(["ann", "bob"], on: configuration)
            let (ann, bob) = (users[0], users[1])
            // Without direct links: this test is about the server route (DirectFileTests has the other).
            let annNode = try makeServerNode(
                "ann", ann, directory: directory, server: configuration, allowsDirectLinks: false, lan: lan)
            let bobNode = try makeServerNode("bob", bob, directory: directory, server: configuration, lan: lan)
            let bytes = (0..<700_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let source = directory.subdirectory("plan.txt")
            try Data(bytes).write(to: URL(fileURLWithPath: source))
            let inbox = directory.subdirectory("inbox")
            try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
            try await withRunningNode(annNode) { annEvents in
                try await annEvents.waitForLogon()
                try await withRunningNode(bobNode) { bobEvents in
                    try await bobEvents.waitForLogon()
                    let id = try await annNode.sendFile(at: source, to: bob)
                    try await bobEvents.wait("the offer") { $0.contains { $0.offer?.id == id } }
                    let offer = try #require(bobEvents.all.lazy.compactMap(\.offer).first { $0.id == id })
                    #expect(offer.name == "plan.txt" && offer.sender == ann)
                    let saved = try await bobNode.receiveFile(offer, into: inbox)
                    #expect(try Data(contentsOf: URL(fileURLWithPath: saved)) == Data(bytes))
                    try await annEvents.wait("the completed status") { events in
                        events.contains { event in
                            if case .transferStatus(let status) = event {
                                return status.id == id && status.outcome == .completed
                            }
                            return false
                        }
                    }
                    #expect(try await annNode.transfers().isEmpty)
                }
            }
        }
    }
}

extension ParleyNode.Event {
    fileprivate var offer: FileOffer? {
        if case .fileOffered(let offer) = self { return offer }
        return nil
    }
}
