import NIOCore
import NIOPosix

/// The deadlines of the links on one event loop, kept in one heap behind one NIO timer.
///
/// Every link has a deadline (its idle timeout or its next heartbeat, whichever comes first). As
/// one NIO scheduled callback each, tens of thousands of idle links cost the loop's timer heap
/// about 100 bytes apiece and every close a linear search of that heap (NIO cancels a scheduled
/// callback by scanning for it). Here a link costs one entry of 16 bytes and knows its place in
/// the heap, so changing or removing its deadline costs O(log n); the loop's own timer is set
/// for the earliest deadline only.
///
/// Only the loop's thread uses it (hence `@unchecked Sendable`, which a thread-specific value
/// must be). The links on a `MultiThreadedEventLoopGroup` loop share that loop's instance
/// (``for(_:)``); a link on any other kind of loop (`EmbeddedEventLoop` in tests) gets one of
/// its own.
final class LinkTimers: NIOScheduledCallbackHandler, @unchecked Sendable {
    private struct Entry {
        var deadline: NIODeadline
        let link: LinkHandler
    }

    private let eventLoop: any EventLoop
    /// A binary min-heap on `deadline`; each link holds its entry's index (``LinkHandler/timerSlot``).
    private var heap: [Entry] = []
    /// The NIO timer, set for the earliest deadline when it was armed.
    private var armed: (callback: NIOScheduledCallback, deadline: NIODeadline)?
    /// The links whose deadline passed, while they are told (kept to reuse its storage).
    private var due: [LinkHandler] = []

    private static let perThread = ThreadSpecificVariable<LinkTimers>()

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// The timers for links on `eventLoop`, called on that loop: the loop's shared instance when
    /// it is a `MultiThreadedEventLoopGroup` loop, a new one otherwise.
    static func `for`(_ eventLoop: any EventLoop) -> LinkTimers {
        guard let current = MultiThreadedEventLoopGroup.currentEventLoop, current === eventLoop else {
            return LinkTimers(eventLoop: eventLoop)
        }
        if let timers = perThread.currentValue { return timers }
        let timers = LinkTimers(eventLoop: eventLoop)
        perThread.currentValue = timers
        return timers
    }

    /// How many links have a deadline.
    var count: Int { heap.count }

    /// Sets `link`'s deadline (adding the link, or moving its deadline either way).
    func set(_ link: LinkHandler, at deadline: NIODeadline) {
        if let index = link.timerSlot {
            let earlier = deadline < heap[index].deadline
            heap[index].deadline = deadline
            if earlier { siftUp(index) } else { siftDown(index) }
        } else {
            heap.append(Entry(deadline: deadline, link: link))
            link.timerSlot = heap.count - 1
            siftUp(heap.count - 1)
        }
        arm()
    }

    /// Removes `link`'s deadline, if it has one.
    func remove(_ link: LinkHandler) {
        guard let index = link.timerSlot else { return }
        link.timerSlot = nil
        let last = heap.count - 1
        if index != last {
            heap.swapAt(index, last)
            heap[index].link.timerSlot = index
        }
        heap.removeLast()
        if index < heap.count {
            siftDown(index)
            siftUp(index)
        }
        if heap.isEmpty, let armed {
            eventLoop.assumeIsolated().cancelScheduledCallback(armed.callback)
            self.armed = nil
        }
    }

    func handleScheduledCallback(eventLoop: some EventLoop) {
        armed = nil
        let now = self.eventLoop.now
        // Taken out first, then told: a link that sets a deadline of `now` again waits for the
        // next firing instead of being told twice in this one.
        while let first = heap.first, first.deadline <= now {
            due.append(first.link)
            remove(first.link)
        }
        for link in due { link.timerFired() }
        due.removeAll(keepingCapacity: due.count <= 64)
        arm()
    }

    /// Sets the NIO timer for the earliest deadline, unless it is set for it already.
    private func arm() {
        guard let first = heap.first else { return }
        if let armed {
            guard first.deadline < armed.deadline else { return }
            eventLoop.assumeIsolated().cancelScheduledCallback(armed.callback)
            self.armed = nil
        }
        if let callback = try? eventLoop.assumeIsolated().scheduleCallback(at: first.deadline, handler: self) {
            armed = (callback, first.deadline)
        }
    }

    private func siftUp(_ index: Int) {
        var child = index
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { return }
            swap(child, parent)
            child = parent
        }
    }

    private func siftDown(_ index: Int) {
        var parent = index
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            let right = left + 1
            let smaller = right < heap.count && heap[right].deadline < heap[left].deadline ? right : left
            guard heap[smaller].deadline < heap[parent].deadline else { return }
            swap(smaller, parent)
            parent = smaller
        }
    }

    private func swap(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        heap[a].link.timerSlot = a
        heap[b].link.timerSlot = b
    }
}
