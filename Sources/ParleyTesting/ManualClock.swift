import Foundation
import ParleyCore
package import ParleyServer
import Synchronization

/// Time for a test server that stands still until the test moves it with ``advance(by:)``:
/// a back-off or an expiry then ends exactly when the test says, however slow the machine.
public final class ManualClock: Sendable {
    private let start = ContinuousClock.now
    private let startDate = Date()
    private let elapsed = Mutex<Duration>(.zero)

    /// A clock standing at the moment it was made.
    public init() {}

    /// Moves the clock forward by `duration`.
    public func advance(by duration: Duration) {
        elapsed.withLock { $0 += duration }
    }

    /// The clock to set as the server configuration's `clock`.
    package var serverClock: ServerClock {
        ServerClock(
            now: { self.start + self.elapsed.withLock { $0 } },
            date: { self.startDate.addingTimeInterval(self.elapsed.withLock { $0 }.timeInterval) }
        )
    }
}
