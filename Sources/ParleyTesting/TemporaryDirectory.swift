public import Foundation

/// A fresh directory under the system's temporary directory, removed by ``remove()``.
public struct TemporaryDirectory: Sendable {
    /// The directory.
    public let url: URL

    /// Creates `PREFIX-UUID` under the system's temporary directory.
    public init(prefix: String = "parley-tests") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// The directory's path.
    public var path: String { url.path }

    /// The path of `name` inside the directory (not created).
    public func subdirectory(_ name: String) -> String { path + "/" + name }

    /// Removes the directory and everything in it; says so on standard output when it cannot.
    public func remove() {
        do {
            try FileManager.default.removeItem(at: url)
        } catch {
            print("could not remove \(path): \(error)")
        }
    }
}
