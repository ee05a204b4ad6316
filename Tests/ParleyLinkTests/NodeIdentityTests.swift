import Foundation
import ParleyCore
import ParleyLink
import Testing

@Suite("Node identity")
struct NodeIdentityTests {
    @Test("a new key is created with mode 0600 and reloaded with the same node ID")
    func createAndReload() async throws {
        try await withTemporaryDirectory { directory in
            let dataDirectory = directory + "/data"
            let first = try NodeIdentity(dataDirectory: dataDirectory)
            let path = dataDirectory + "/" + NodeIdentity.keyFileName
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.hasPrefix("-----BEGIN PRIVATE KEY-----"))
            // Only the key file is left behind, no temporary file.
            #expect(try FileManager.default.contentsOfDirectory(atPath: dataDirectory) == [NodeIdentity.keyFileName])

            let second = try NodeIdentity(dataDirectory: dataDirectory)
            #expect(second.nodeID == first.nodeID)
            #expect(second.publicKeyDER == first.publicKeyDER)
            #expect(first.nodeID == NodeID(subjectPublicKeyInfo: first.publicKeyDER))
            #expect(try String(contentsOfFile: path, encoding: .utf8) == text)
        }
    }

    @Test("separate data directories give separate node IDs")
    func distinctKeys() async throws {
        try await withTemporaryDirectory { directory in
            let a = try NodeIdentity(dataDirectory: directory + "/a")
            let b = try NodeIdentity(dataDirectory: directory + "/b")
            #expect(a.nodeID != b.nodeID)
        }
    }

    @Test("nodes starting at once in one data directory agree on one key")
    func concurrentCreation() async throws {
        try await withTemporaryDirectory { directory in
            let ids = try await withThrowingTaskGroup(of: NodeID.self) { group in
                for _ in 0..<4 {
                    group.addTask { try NodeIdentity(dataDirectory: directory).nodeID }
                }
                return try await group.reduce(into: Set<NodeID>()) { $0.insert($1) }
            }
            #expect(ids.count == 1)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == [NodeIdentity.keyFileName])
        }
    }

    @Test(
        "a corrupt key file is a clear error and is left untouched",
        arguments: ["", "not a key\n", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]
    )
    func corruptKeyFile(contents: String) async throws {
        try await withTemporaryDirectory { directory in
            let path = directory + "/" + NodeIdentity.keyFileName
            try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
            let error = #expect(throws: NodeIdentityError.self) {
                try NodeIdentity(dataDirectory: directory)
            }
            #expect(error?.code == .corruptKeyFile)
            #expect(error?.path == path)
            #expect(error?.description.contains("corrupt-key-file") == true)
            #expect(try String(contentsOfFile: path, encoding: .utf8) == contents)
        }
    }

    @Test("a data directory that cannot be created is a key-file access error")
    func unwritableDirectory() async throws {
        try await withTemporaryDirectory { directory in
            // A file where the data directory should be.
            let blocker = directory + "/blocker"
            try Data().write(to: URL(fileURLWithPath: blocker))
            let error = #expect(throws: NodeIdentityError.self) {
                try NodeIdentity(dataDirectory: blocker)
            }
            #expect(error?.code == .keyFileAccess)
        }
    }
}

/// Runs `body` with a new, empty directory that is removed afterwards.
func withTemporaryDirectory<Result>(_ body: (String) async throws -> Result) async throws -> Result {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("parley-link-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { removeTemporaryDirectory(path) }
    return try await body(path)
}

private func removeTemporaryDirectory(_ path: String) {
    do {
        try FileManager.default.removeItem(atPath: path)
    } catch {
        Issue.record("could not remove \(path): \(error)")
    }
}
