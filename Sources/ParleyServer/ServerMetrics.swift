import CoreMetrics
import Synchronization

/// The server's metrics: swift-metrics handles (whatever backend the application bootstrapped;
/// `parley server` exports them to Prometheus), plus the few totals ``ParleyServer/status``
/// reports. Each event costs one counter increment in the backend and, for the totals, one
/// relaxed atomic add: nothing else runs on the message path.
///
/// No label carries a user: the dimensions are fixed, small sets ("result", "reason").
final class ServerMetrics: Sendable {
    let connectionsOpened: Counter
    let connectionsRefused: Counter
    let connections: Gauge
    let sessionsOnline: Gauge
    let guests: Gauge
    private let messagesReceivedCounter: Counter
    private let messagesStoredCounter: Counter
    private let messagesDeliveredCounter: Counter
    private let messagesAcknowledgedCounter: Counter
    let commitBatchSize: Recorder
    let commitDuration: Timer
    let commitQueueDepth: Gauge
    let slowConsumerCloses: Counter
    /// Store operations that failed (storing, acknowledging, loading, pruning).
    let storageErrors: Counter
    let logonSuccesses: Counter
    let logonFailures: Counter
    /// Successful logons with a resumption token instead of a password (also in logonSuccesses).
    let logonsResumed: Counter
    /// Logons refused without a password check (in flight, or backing off).
    let logonsThrottled: Counter
    /// Back-offs started after repeated failures (per user or per source address).
    let logonBackoffs: Counter
    let tlsHandshakes: Counter
    let tlsHandshakeFailures: Counter

    private let received = Atomic<Int>(0)
    private let stored = Atomic<Int>(0)
    private let delivered = Atomic<Int>(0)
    private let acknowledged = Atomic<Int>(0)

    init(factory: any MetricsFactory) {
        connectionsOpened = Counter(label: "parley_connections_opened_total", factory: factory)
        connectionsRefused = Counter(label: "parley_connections_refused_total", factory: factory)
        connections = Gauge(label: "parley_connections", factory: factory)
        sessionsOnline = Gauge(label: "parley_sessions_online", factory: factory)
        guests = Gauge(label: "parley_guests", factory: factory)
        messagesReceivedCounter = Counter(label: "parley_messages_received_total", factory: factory)
        messagesStoredCounter = Counter(label: "parley_messages_stored_total", factory: factory)
        messagesDeliveredCounter = Counter(label: "parley_messages_delivered_total", factory: factory)
        messagesAcknowledgedCounter = Counter(label: "parley_messages_acknowledged_total", factory: factory)
        commitBatchSize = Recorder(label: "parley_store_commit_batch_size", factory: factory)
        commitDuration = Timer(label: "parley_store_commit_duration_seconds", factory: factory)
        commitQueueDepth = Gauge(label: "parley_store_commit_queue_depth", factory: factory)
        slowConsumerCloses = Counter(label: "parley_slow_consumer_closes_total", factory: factory)
        storageErrors = Counter(label: "parley_storage_errors_total", factory: factory)
        logonSuccesses = Counter(label: "parley_logons_total", dimensions: [("result", "success")], factory: factory)
        logonFailures = Counter(label: "parley_logons_total", dimensions: [("result", "failure")], factory: factory)
        logonsResumed = Counter(label: "parley_logons_resumed_total", factory: factory)
        logonsThrottled = Counter(label: "parley_logons_throttled_total", factory: factory)
        logonBackoffs = Counter(label: "parley_logon_backoffs_total", factory: factory)
        tlsHandshakes = Counter(
            label: "parley_tls_handshakes_total", dimensions: [("result", "success")], factory: factory)
        tlsHandshakeFailures = Counter(
            label: "parley_tls_handshakes_total", dimensions: [("result", "failure")], factory: factory)
    }

    /// A SEND_MESSAGE was taken for processing (one per message, whatever its recipients).
    func messageReceived() {
        messagesReceivedCounter.increment()
        received.add(1, ordering: .relaxed)
    }

    /// Deliveries (message, recipient) written to the store.
    func messagesStored(_ count: Int) {
        guard count > 0 else { return }
        messagesStoredCounter.increment(by: count)
        stored.add(count, ordering: .relaxed)
    }

    /// A MESSAGE event was written to a recipient.
    func messageDelivered() {
        messagesDeliveredCounter.increment()
        delivered.add(1, ordering: .relaxed)
    }

    /// Deliveries whose acknowledgements were recorded.
    func messagesAcknowledged(_ count: Int) {
        guard count > 0 else { return }
        messagesAcknowledgedCounter.increment(by: count)
        acknowledged.add(count, ordering: .relaxed)
    }

    /// Sessions and connections changed: the gauges follow.
    func update(connections connectionCount: Int, sessions sessionCount: Int) {
        connections.record(connectionCount)
        sessionsOnline.record(sessionCount)
        guests.record(max(connectionCount - sessionCount, 0))
    }

    /// The message totals since the server started.
    var totals: ParleyServer.Status.Messages {
        ParleyServer.Status.Messages(
            received: received.load(ordering: .relaxed),
            stored: stored.load(ordering: .relaxed),
            delivered: delivered.load(ordering: .relaxed),
            acknowledged: acknowledged.load(ordering: .relaxed)
        )
    }
}
