import Foundation
import GRDB
import ParleyCore
import ParleyServerStore
import Testing

/// A store on a real SQLite file in a fresh temporary directory, removed afterwards.
func withTemporaryStore<T>(
    configuration: ServerStore.Configuration = .init(),
    _ body: (_ store: ServerStore, _ path: String) throws -> T
) throws -> T {
    let directory = FileManager.default.temporaryDirectory
        .appendingPathComponent("parley-store-tests-\(UUID().uuidString)", isDirectory: true)
    defer {
        do {
            try FileManager.default.removeItem(at: directory)
        } catch {
            Issue.record("cannot remove \(directory.path): \(error)")
        }
    }
    // A nested path: the store creates the missing directories.
    let path = directory.appendingPathComponent("data/server.sqlite").path
    let store = try ServerStore(path: path, configuration: configuration)
    return try body(store, path)
}

/// A second, raw connection to the store's file, to inspect or damage it.
func withRawDatabase<T>(_ path: String, _ body: (Database) throws -> T) throws -> T {
    var configuration = Configuration()
    configuration.busyMode = .timeout(5)
    let queue = try DatabaseQueue(path: path, configuration: configuration)
    return try queue.writeWithoutTransaction(body)
}

let now = Date(timeIntervalSince1970: 1_700_000_000.123)

func person(
    _ userName: String,
    first: String = "",
    last: String = "",
    organization: String = "",
    department: String = "",
    application: String = ""
) -> UserInfo {
    UserInfo(
        userName: userName,
        firstName: first,
        lastName: last,
        organization: organization,
        department: department,
        application: application
    )
}

extension ServerStore {
    /// Registers users with assigned IDs from 1000; returns their IDs in order.
    func register(_ infos: UserInfo...) throws -> [UserID] {
        try infos.map { info in
            try registerUser(info, passwordHash: "hash-\(info.userName)", requestedID: nil, minimumID: 1000, now: now)
                .userID
        }
    }
}
