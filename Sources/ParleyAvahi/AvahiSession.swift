internal import CAvahi
import Logging
import ParleyDiscovery

/// The Avahi side of ``AvahiDiscovery``: one `AvahiThreadedPoll`, the client on it, the entry
/// group that publishes this node, the browser and one resolver per browsed instance.
///
/// Threading invariant (the reason for `@unchecked Sendable`): `poll` and the `let`s never
/// change; every `var` is read and written only on the poll thread (inside Avahi callbacks, which
/// run with the poll lock held) or by another thread between ``lock()`` and ``unlock()``, or after
/// ``shutDown()`` has joined the poll thread. Callbacks never take the lock (it is not recursive).
/// The lab tests exercise it: callbacks on the poll thread while `advertise`/`update` lock from
/// other threads, and daemon restarts that recreate the client from inside callbacks.
final class AvahiSession: @unchecked Sendable {
    private let poll: OpaquePointer  // AvahiThreadedPoll*
    private let configuration: AvahiDiscovery.Configuration
    private let logger: Logger
    private let events: PeerEvents.Continuation

    private var client: OpaquePointer?  // AvahiClient*
    private var group: OpaquePointer?  // AvahiEntryGroup*
    private var browser: OpaquePointer?  // AvahiServiceBrowser*
    private var resolvers: [PeerTable.InstanceKey: OpaquePointer] = [:]  // AvahiServiceResolver*
    /// Instances flagged OUR_OWN while our own name is not settled yet (see `browsed`).
    private var deferred: Set<PeerTable.InstanceKey> = []
    /// Whether our entry group is established (its name is ours on the network).
    private var established = false
    private var reconnectTimer: OpaquePointer?  // AvahiTimeout*
    private var staleTimer: OpaquePointer?  // AvahiTimeout*

    private var table: PeerTable
    /// What to publish, with its TXT strings; nil: nothing.
    private var record: ServiceRecord?
    private var txt: [[UInt8]] = []
    /// The instance name in use: the record's, or the alternative Avahi chose after a collision.
    private var publishedName: String?
    private var retryDelay: Duration
    /// Whether the warning for the current outage has been logged.
    private var outageReported = false
    /// Why avahi-daemon cannot be used now; nil while connected to it (or not tried yet).
    private(set) var outage: DiscoveryError?
    /// Whether peers were marked stale by a lost connection and await the browser's first sweep.
    private var sweepPending = false
    private var pollThreadStarted = false
    private var isShutDown = false

    init(configuration: AvahiDiscovery.Configuration, logger: Logger, events: PeerEvents.Continuation)
        throws(DiscoveryError)
    {
        guard let poll = avahi_threaded_poll_new() else {
            throw DiscoveryError(code: .backendFailure, message: "avahi_threaded_poll_new failed")
        }
        self.poll = poll
        self.configuration = configuration
        self.logger = logger
        self.events = events
        self.table = PeerTable(ownNodeID: configuration.ownNodeID, maximumPeers: configuration.maximumPeers)
        self.retryDelay = configuration.retryDelay
    }

    private var userdata: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    private static func from(_ userdata: UnsafeMutableRawPointer) -> AvahiSession {
        Unmanaged<AvahiSession>.fromOpaque(userdata).takeUnretainedValue()
    }

    // MARK: - Lifecycle (called from outside the poll thread)

    func lock() { avahi_threaded_poll_lock(poll) }
    func unlock() { avahi_threaded_poll_unlock(poll) }

    /// Connects (or arranges to retry) and starts the poll thread.
    func start() throws(DiscoveryError) {
        lock()
        connect()
        unlock()
        guard avahi_threaded_poll_start(poll) >= 0 else {
            throw DiscoveryError(code: .backendFailure, message: "avahi_threaded_poll_start failed")
        }
        pollThreadStarted = true
    }

    /// Withdraws the service and frees everything, in the order that is safe: stop the poll
    /// thread (joins it), free the client (with its group, browser and resolvers; the daemon
    /// sends goodbye packets for the withdrawn service), then free the poll. Idempotent.
    func shutDown() {
        guard !isShutDown else { return }
        isShutDown = true
        if pollThreadStarted { avahi_threaded_poll_stop(poll) }
        let api = avahi_threaded_poll_get(poll)
        for timer in [reconnectTimer, staleTimer] {
            if let timer { api?.pointee.timeout_free?(timer) }
        }
        reconnectTimer = nil
        staleTimer = nil
        if let client { avahi_client_free(client) }
        client = nil
        group = nil
        browser = nil
        resolvers.removeAll()
        avahi_threaded_poll_free(poll)
        events.finish()
    }

    // MARK: - Advertising (called with the lock held)

    func advertise(_ record: ServiceRecord, txt: [[UInt8]]) {
        if self.record?.instanceName != record.instanceName { publishedName = record.instanceName }
        self.record = record
        self.txt = txt
        if let group { avahi_entry_group_reset(group) }
        publishIfRunning()
    }

    /// Updates TXT in place when only TXT fields changed; otherwise re-publishes.
    func update(_ record: ServiceRecord, txt: [[UInt8]]) -> Bool {
        guard let current = self.record else { return false }
        guard current.instanceName == record.instanceName, current.port == record.port else {
            advertise(record, txt: txt)
            return true
        }
        self.record = record
        self.txt = txt
        guard let group, avahi_entry_group_is_empty(group) == 0, let name = publishedName else {
            publishIfRunning()
            return true
        }
        let result = AvahiConversions.withStringList(txt) { list in
            avahi_entry_group_update_service_txt_strlst(
                group, AvahiIfIndex(AVAHI_IF_UNSPEC), AvahiProtocol(AVAHI_PROTO_UNSPEC), AvahiPublishFlags(0),
                name, configuration.serviceType, nil, list)
        }
        if result < 0 {
            logger.debug(
                "updating TXT in place failed; re-publishing",
                metadata: ["discovery.error": "\(discoveryError(avahi: result, "updating the TXT record"))"])
            avahi_entry_group_reset(group)
            publishIfRunning()
        }
        return true
    }

    func withdraw() {
        record = nil
        publishedName = nil
        established = false
        if let group { avahi_entry_group_reset(group) }
        resolveDeferred()
    }

    // MARK: - Client

    /// Creates the client. With AVAHI_CLIENT_NO_FAIL it succeeds while avahi-daemon is absent
    /// (state CONNECTING, it follows the daemon by itself); it fails only without a message bus,
    /// and then a timer retries with back-off.
    private func connect() {
        var error: Int32 = 0
        // The callback fires synchronously inside avahi_client_new, before it returns: callbacks
        // use their `client` argument, never `self.client`.
        let newClient = avahi_client_new(
            avahi_threaded_poll_get(poll), AVAHI_CLIENT_NO_FAIL,
            { client, state, userdata in
                guard let client, let userdata else { return }
                AvahiSession.from(userdata).clientStateChanged(client, state)
            }, userdata, &error)
        guard let newClient else {
            reportOutage(discoveryError(avahi: error, "connecting to avahi-daemon"))
            scheduleReconnect(after: retryDelay)
            retryDelay = min(retryDelay * 2, configuration.maximumRetryDelay)
            return
        }
        client = newClient
    }

    private func clientStateChanged(_ client: OpaquePointer, _ state: AvahiClientState) {
        switch state {
        case AVAHI_CLIENT_S_RUNNING:
            retryDelay = configuration.retryDelay
            outage = nil
            if outageReported {
                outageReported = false
                logger.info("LAN discovery available: connected to avahi-daemon")
            } else {
                logger.debug("connected to avahi-daemon")
            }
            startBrowsing(client)
            publish(client)
        case AVAHI_CLIENT_S_REGISTERING, AVAHI_CLIENT_S_COLLISION:
            // The daemon is (re)registering its host name: withdraw, re-add once RUNNING.
            established = false
            if let group { avahi_entry_group_reset(group) }
        case AVAHI_CLIENT_CONNECTING:
            reportOutage(
                DiscoveryError(
                    code: .daemonUnavailable, message: "avahi-daemon is not running (waiting for it on D-Bus)"))
        case AVAHI_CLIENT_FAILURE:
            clientFailed(client)
        default:
            break
        }
    }

    /// The client is unusable (daemon gone, D-Bus gone, ...): forget what it owned, keep the
    /// peers as unconfirmed for a grace period, and recreate the client from a timer (never free
    /// a client inside its own callback chain).
    private func clientFailed(_ failed: OpaquePointer) {
        let error = discoveryError(avahi: avahi_client_errno(failed), "avahi client")
        reportOutage(error)
        group = nil  // owned by the client: freed with it
        browser = nil
        resolvers.removeAll()
        deferred.removeAll()
        established = false
        if table.instanceCount > 0 {
            table.markAllStale()
            sweepPending = true
            arm(&staleTimer, after: configuration.staleGracePeriod) { timer, userdata in
                guard let userdata else { return }
                AvahiSession.from(userdata).staleGraceExpired()
            }
        }
        scheduleReconnect(after: .zero)
    }

    private func scheduleReconnect(after delay: Duration) {
        arm(&reconnectTimer, after: delay) { _, userdata in
            guard let userdata else { return }
            AvahiSession.from(userdata).reconnect()
        }
    }

    private func reconnect() {
        disarm(reconnectTimer)
        if let client {
            avahi_client_free(client)
            self.client = nil
        }
        connect()
    }

    private func staleGraceExpired() {
        disarm(staleTimer)
        sweepStale()
    }

    private func sweepStale() {
        guard sweepPending else { return }
        sweepPending = false
        disarm(staleTimer)
        emit(table.sweepStale())
    }

    /// One warning per outage; repeats go to debug.
    private func reportOutage(_ error: DiscoveryError) {
        outage = error
        if outageReported {
            logger.debug("LAN discovery still unavailable", metadata: ["discovery.error": "\(error)"])
            return
        }
        outageReported = true
        logger.warning(
            "LAN discovery unavailable; the node keeps running without it and retries until avahi-daemon is reachable",
            metadata: ["discovery.error": "\(error)"])
    }

    // MARK: - Publishing

    private func publishIfRunning() {
        guard let client, avahi_client_get_state(client) == AVAHI_CLIENT_S_RUNNING else { return }
        publish(client)
    }

    private func publish(_ client: OpaquePointer) {
        guard let record else { return }
        if group == nil {
            group = avahi_entry_group_new(
                client,
                { group, state, userdata in
                    guard let group, let userdata else { return }
                    AvahiSession.from(userdata).groupStateChanged(group, state)
                }, userdata)
            if group == nil {
                logger.warning(
                    "cannot advertise on the LAN",
                    metadata: [
                        "discovery.error":
                            "\(discoveryError(avahi: avahi_client_errno(client), "creating an entry group"))"
                    ])
                return
            }
        }
        guard let group, avahi_entry_group_is_empty(group) != 0 else { return }
        established = false
        var name = publishedName ?? record.instanceName
        for _ in 0..<32 {
            let result = AvahiConversions.withStringList(txt) { list in
                avahi_entry_group_add_service_strlst(
                    group, AvahiIfIndex(AVAHI_IF_UNSPEC), AvahiProtocol(AVAHI_PROTO_UNSPEC), AvahiPublishFlags(0),
                    name, configuration.serviceType, nil, nil, record.port, list)
            }
            if result == Int32(AVAHI_ERR_COLLISION) {
                name = alternativeName(name)  // a local service already has it
                continue
            }
            publishedName = name
            guard result >= 0 else {
                logger.warning(
                    "cannot advertise on the LAN",
                    metadata: ["discovery.error": "\(discoveryError(avahi: result, "adding the service"))"])
                return
            }
            let committed = avahi_entry_group_commit(group)
            if committed < 0 {
                logger.warning(
                    "cannot advertise on the LAN",
                    metadata: ["discovery.error": "\(discoveryError(avahi: committed, "committing the service"))"])
            }
            return
        }
        logger.warning(
            "cannot advertise on the LAN: no free instance name", metadata: ["discovery.instance": "\(name)"])
    }

    private func groupStateChanged(_ group: OpaquePointer, _ state: AvahiEntryGroupState) {
        switch state {
        case AVAHI_ENTRY_GROUP_ESTABLISHED:
            established = true
            resolveDeferred()
            logger.info(
                "advertised on the LAN",
                metadata: [
                    "discovery.instance": "\(publishedName ?? "")",
                    "discovery.node": "\(configuration.ownNodeID)",
                    "discovery.port": "\(record?.port ?? 0)",
                ])
        case AVAHI_ENTRY_GROUP_COLLISION:
            established = false
            // Another host has the name: take Avahi's alternative ("name #2") and publish again.
            let old = publishedName ?? record?.instanceName ?? ""
            let new = alternativeName(old)
            publishedName = new
            logger.info(
                "instance name collision; renamed", metadata: ["discovery.from": "\(old)", "discovery.to": "\(new)"])
            avahi_entry_group_reset(group)
            publish(avahi_entry_group_get_client(group))
        case AVAHI_ENTRY_GROUP_FAILURE:
            let client = avahi_entry_group_get_client(group)
            logger.warning(
                "advertising on the LAN failed",
                metadata: ["discovery.error": "\(discoveryError(avahi: avahi_client_errno(client), "the entry group"))"]
            )
        default:
            break
        }
    }

    private func alternativeName(_ name: String) -> String {
        guard let alternative = avahi_alternative_service_name(name) else { return name + " #2" }
        defer { avahi_free(alternative) }
        return String(cString: alternative)
    }

    // MARK: - Browsing and resolving

    private func startBrowsing(_ client: OpaquePointer) {
        guard browser == nil else { return }
        browser = avahi_service_browser_new(
            client, AvahiIfIndex(AVAHI_IF_UNSPEC), AvahiProtocol(AVAHI_PROTO_UNSPEC), configuration.serviceType, nil,
            AvahiLookupFlags(0),
            { browser, interface, proto, event, name, _, domain, flags, userdata in
                guard let browser, let userdata else { return }
                AvahiSession.from(userdata).browsed(browser, interface, proto, event, name, domain, flags)
            }, userdata)
        if browser == nil {
            logger.warning(
                "cannot browse the LAN",
                metadata: [
                    "discovery.error": "\(discoveryError(avahi: avahi_client_errno(client), "creating a browser"))"
                ])
            scheduleReconnect(after: retryDelay)
        }
    }

    private func browsed(
        _ browser: OpaquePointer,
        _ interface: AvahiIfIndex,
        _ proto: AvahiProtocol,
        _ event: AvahiBrowserEvent,
        _ name: UnsafePointer<CChar>?,
        _ domain: UnsafePointer<CChar>?,
        _ flags: AvahiLookupResultFlags
    ) {
        switch event {
        case AVAHI_BROWSER_NEW, AVAHI_BROWSER_REMOVE:
            guard let name, let domain else { return }
            let key = PeerTable.InstanceKey(
                interfaceIndex: interface, isIPv6: proto == AvahiProtocol(AVAHI_PROTO_INET6),
                name: String(cString: name), domain: String(cString: domain))
            if event == AVAHI_BROWSER_REMOVE {
                deferred.remove(key)
                if let resolver = resolvers.removeValue(forKey: key) { avahi_service_resolver_free(resolver) }
                emit(table.removed(key))
                return
            }
            table.confirm(key)
            // OUR_OWN is decided by instance name, so it also marks another node's instance
            // that has the name we are still probing for. Resolving that instance while our
            // daemon probes made the established owner lose its name in the lab (both daemons
            // then announced one name and peers mixed their records), so wait until our name
            // is settled (established or renamed), then resolve and decide by node ID.
            let ourOwn = flags.rawValue & AVAHI_LOOKUP_RESULT_OUR_OWN.rawValue != 0
            if ourOwn && record != nil && !established {
                deferred.insert(key)
                return
            }
            startResolver(key, avahi_service_browser_get_client(browser))
        case AVAHI_BROWSER_ALL_FOR_NOW:
            sweepStale()  // after a reconnect: whatever was not seen again is gone
        case AVAHI_BROWSER_FAILURE:
            let error = avahi_client_errno(avahi_service_browser_get_client(browser))
            logger.warning(
                "browsing the LAN failed; restarting",
                metadata: ["discovery.error": "\(discoveryError(avahi: error, "the browser"))"])
            scheduleReconnect(after: retryDelay)
        default:
            break  // CACHE_EXHAUSTED
        }
    }

    private func resolveDeferred() {
        guard !deferred.isEmpty, let client else { return }
        let keys = deferred
        deferred.removeAll()
        for key in keys { startResolver(key, client) }
    }

    /// A resolver per instance, kept until the instance goes: it calls back again when the
    /// TXT record or address changes, and fails when the records expire.
    private func startResolver(_ key: PeerTable.InstanceKey, _ client: OpaquePointer) {
        guard resolvers[key] == nil else { return }
        let proto = AvahiProtocol(key.isIPv6 ? AVAHI_PROTO_INET6 : AVAHI_PROTO_INET)
        let resolver = avahi_service_resolver_new(
            client, key.interfaceIndex, proto, key.name, configuration.serviceType, key.domain, proto,
            AvahiLookupFlags(0),
            { resolver, interface, proto, event, name, _, domain, _, address, port, txt, flags, userdata in
                guard let resolver, let userdata else { return }
                AvahiSession.from(userdata).resolved(
                    resolver, interface, proto, event, name, domain, address, port, txt, flags)
            }, userdata)
        if let resolver {
            resolvers[key] = resolver
        } else {
            logger.debug(
                "cannot resolve a peer",
                metadata: [
                    "discovery.instance": "\(key)",
                    "discovery.error": "\(discoveryError(avahi: avahi_client_errno(client), "creating a resolver"))",
                ])
        }
    }

    private func resolved(
        _ resolver: OpaquePointer,
        _ interface: AvahiIfIndex,
        _ proto: AvahiProtocol,
        _ event: AvahiResolverEvent,
        _ name: UnsafePointer<CChar>?,
        _ domain: UnsafePointer<CChar>?,
        _ address: UnsafePointer<AvahiAddress>?,
        _ port: UInt16,
        _ txt: UnsafeMutablePointer<AvahiStringList>?,
        _ flags: AvahiLookupResultFlags
    ) {
        guard let name, let domain else { return }
        let key = PeerTable.InstanceKey(
            interfaceIndex: interface, isIPv6: proto == AvahiProtocol(AVAHI_PROTO_INET6),
            name: String(cString: name), domain: String(cString: domain))
        guard event == AVAHI_RESOLVER_FOUND, let address else {
            // Records expired or never answered (a crashed peer ends here after the SRV/TXT
            // TTL): treat it as gone; the resolver stays and reports it again if it returns.
            let error = avahi_client_errno(avahi_service_resolver_get_client(resolver))
            logger.debug(
                "cannot resolve a peer",
                metadata: [
                    "discovery.instance": "\(key)", "discovery.error": "\(discoveryError(avahi: error, "resolving"))",
                ])
            emit(table.removed(key))
            return
        }
        guard let record = TXTRecord(decoding: AvahiConversions.txtEntries(txt)) else {
            logger.debug(
                "ignoring a service without a usable Parley TXT record", metadata: ["discovery.instance": "\(key)"])
            emit(table.removed(key))
            return
        }
        let ourOwn = flags.rawValue & AVAHI_LOOKUP_RESULT_OUR_OWN.rawValue != 0
        guard !ourOwn || record.nodeID != configuration.ownNodeID else {
            emit(table.removed(key))  // our own service, as the flag and the node ID agree
            return
        }
        if ourOwn {
            logger.debug("another node advertises our instance name", metadata: ["discovery.instance": "\(key)"])
        }
        let interfaceName = AvahiConversions.interfaceName(interface)
        let peerAddress = PeerAddress(
            host: AvahiConversions.host(address, interface: interfaceName), port: port, interface: interfaceName)
        let refused = table.refusedCount
        emit(table.resolved(key, record: record, address: peerAddress))
        if table.refusedCount != refused {
            logger.warning(
                "too many peers; ignoring a new one",
                metadata: ["discovery.node": "\(record.nodeID)", "discovery.limit": "\(configuration.maximumPeers)"])
        }
    }

    private func emit(_ peerEvents: [PeerEvent]) {
        for event in peerEvents {
            switch events.yield(event) {
            case .enqueued, .terminated:
                break
            case .dropped:
                logger.warning("peer event buffer full; event dropped", metadata: ["discovery.node": "\(event.nodeID)"])
            }
        }
    }

    // MARK: - Timers (AvahiPoll timeouts run on the poll thread)

    private func arm(_ timer: inout OpaquePointer?, after delay: Duration, _ callback: AvahiTimeoutCallback) {
        var when = timeval()
        avahi_elapse_time(&when, AvahiConversions.milliseconds(delay), 0)
        guard let api = avahi_threaded_poll_get(poll) else { return }
        if let timer {
            api.pointee.timeout_update?(timer, &when)
        } else {
            timer = api.pointee.timeout_new?(api, &when, callback, userdata)
        }
    }

    private func disarm(_ timer: OpaquePointer?) {
        guard let timer, let api = avahi_threaded_poll_get(poll) else { return }
        api.pointee.timeout_update?(timer, nil)
    }
}
