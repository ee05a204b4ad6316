import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import ParleyServer
import Prometheus

/// The admin's HTTP endpoint of `parley server --metrics-address`: `/metrics` (Prometheus text),
/// `/status` (JSON) and `/` (a small read-only HTML page that polls `/status`).
///
/// Read-only and unauthenticated: bind it to loopback or an admin network, never to the internet.
struct StatusHTTPServer {
    let server: ParleyServer
    let registry: PrometheusCollectorRegistry

    /// Binds and serves until the returned channel is closed.
    func bind(host: String, port: Int) async throws -> any Channel {
        let endpoint = StatusEndpoint(server: server, registry: registry)
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(StatusHTTPHandler(endpoint: endpoint))
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}

/// What each path answers.
struct StatusEndpoint: Sendable {
    let server: ParleyServer
    let registry: PrometheusCollectorRegistry

    struct Response {
        var status: HTTPResponseStatus
        var contentType: String
        var body: String
    }

    func respond(to path: String) -> Response {
        switch path {
        case "/metrics":
            return Response(
                status: .ok,
                contentType: "text/plain; version=0.0.4; charset=utf-8",
                body: registry.emitToString() + ProcessMetrics.read().prometheusText
            )
        case "/status":
            return Response(status: .ok, contentType: "application/json", body: Self.json(server.status))
        case "/", "/index.html":
            return Response(status: .ok, contentType: "text/html; charset=utf-8", body: StatusPage.html(server.status))
        default:
            return Response(status: .notFound, contentType: "text/plain; charset=utf-8", body: "not found\n")
        }
    }

    static func json(_ status: ParleyServer.Status) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        encoder.dateEncodingStrategy = .iso8601
        do {
            return String(decoding: try encoder.encode(status), as: UTF8.self) + "\n"
        } catch {
            return "{\"error\": \"cannot encode the status\"}\n"
        }
    }
}

/// One request, one answer: GET and HEAD only.
final class StatusHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoint: StatusEndpoint
    private var request: HTTPRequestHead?

    init(endpoint: StatusEndpoint) {
        self.endpoint = endpoint
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            let response: StatusEndpoint.Response
            if head.method == .GET || head.method == .HEAD {
                let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
                response = endpoint.respond(to: path)
            } else {
                response = .init(status: .methodNotAllowed, contentType: "text/plain", body: "GET only\n")
            }
            write(response, for: head, context: context)
        }
    }

    private func write(_ response: StatusEndpoint.Response, for head: HTTPRequestHead, context: ChannelHandlerContext) {
        let body = ByteBuffer(string: response.body)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        headers.add(name: "Cache-Control", value: "no-store")
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers))),
            promise: nil
        )
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

@available(*, unavailable)
extension StatusHTTPHandler: Sendable {}

/// CPU, memory and descriptors of this process, from /proc, in Prometheus' standard names.
struct ProcessMetrics {
    var cpuSeconds: Double
    var residentBytes: Int
    var openDescriptors: Int

    static func read() -> ProcessMetrics {
        var metrics = ProcessMetrics(cpuSeconds: 0, residentBytes: 0, openDescriptors: 0)
        metrics.cpuSeconds = CPUUsage.seconds(ofProcess: getpid()) ?? 0
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Int(fields[1]) {
                metrics.residentBytes = pages * Int(sysconf(Int32(_SC_PAGESIZE)))
            }
        }
        metrics.openDescriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return metrics
    }

    var prometheusText: String {
        """
        # TYPE process_cpu_seconds_total counter
        process_cpu_seconds_total \(cpuSeconds)
        # TYPE process_resident_memory_bytes gauge
        process_resident_memory_bytes \(residentBytes)
        # TYPE process_open_fds gauge
        process_open_fds \(openDescriptors)

        """
    }
}
