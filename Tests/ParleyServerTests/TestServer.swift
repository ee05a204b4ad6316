import Foundation
import Logging
import NIOPosix
import ParleyServerStore
import ParleyTesting

@testable import ParleyServer

/// A server context on a fresh SQLite database in a temporary directory, with a real blocking
/// pool and committer, for driving connection handlers without sockets.
struct TestServer {
    let directory: TemporaryDirectory
    let context: ServerContext
    private let pool: NIOThreadPool

    init(_ configure: (inout ParleyServer.Configuration) -> Void = { _ in }) throws {
        directory = try TemporaryDirectory(prefix: "parley-session")
        var configuration = ParleyServer.Configuration(dataDirectory: directory.path)
        configuration.passwordCost = .insecureFastForTesting
        configure(&configuration)
        let store = try ServerStore(path: configuration.databasePath)
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let metrics = ParleyServer(configuration: configuration).metrics
        context = ServerContext(
            configuration: configuration,
            store: store,
            registry: SessionRegistry(metrics: metrics),
            blockingPool: pool,
            logger: Logger(label: "parley.test"),
            metrics: metrics,
            applicationInbox: ApplicationInbox(isAvailable: false, capacity: 1)
        )
    }

    func close() async {
        await context.committer.shutdown()
        try? await pool.shutdownGracefully()
        directory.remove()
    }
}
