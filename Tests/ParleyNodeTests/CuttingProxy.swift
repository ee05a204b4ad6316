import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on loopback whose connections can be cut (closed, both ways) while it keeps
/// accepting new ones, as a cable pulled and plugged in again looks to the two ends. It counts
/// the bytes it forwarded from the connecting side to the target.
final class CuttingProxy: Sendable {
    private let target = Mutex<Int?>(nil)
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])
    private let forwarded = Atomic<Int>(0)
    private let listener: any Channel

    var port: Int { listener.localAddress?.port ?? 0 }

    /// Bytes forwarded from the connecting side to the target so far.
    var bytesForwarded: Int { forwarded.load(ordering: .relaxed) }

    init() async throws {
        let box = Box()
        listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { inbound in
                guard let proxy = box.proxy, let port = proxy.target.withLock({ $0 }) else {
                    return inbound.close()
                }
                return ClientBootstrap(group: inbound.eventLoop)
                    .connect(host: "127.0.0.1", port: port)
                    .flatMap { outbound in
                        proxy.track(inbound)
                        proxy.track(outbound)
                        return outbound.pipeline.addHandler(Forwarder(to: inbound, counting: nil)).flatMap {
                            inbound.pipeline.addHandler(Forwarder(to: outbound, counting: proxy))
                        }
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        box.proxy = self
    }

    func forward(to port: Int) { target.withLock { $0 = port } }

    /// Closes every connection open now; later ones are forwarded again.
    func cut() {
        let open = connections.withLock { connections in
            defer { connections = [:] }
            return Array(connections.values)
        }
        for channel in open { channel.close(promise: nil) }
    }

    func close() async throws {
        cut()
        try await listener.close()
    }

    private func track(_ channel: any Channel) {
        connections.withLock { $0[ObjectIdentifier(channel)] = channel }
        channel.closeFuture.whenComplete { _ in
            self.connections.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(channel)) }
        }
    }

    private final class Box: @unchecked Sendable {
        // Set once, right after binding, before the test learns the port and connects.
        var proxy: CuttingProxy?
    }

    private final class Forwarder: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer

        private let peer: any Channel
        private let counting: CuttingProxy?

        init(to peer: any Channel, counting: CuttingProxy?) {
            self.peer = peer
            self.counting = counting
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            counting?.forwarded.add(bytes.readableBytes, ordering: .relaxed)
            peer.writeAndFlush(bytes, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer.close(promise: nil)
            context.fireChannelInactive()
        }
    }
}
