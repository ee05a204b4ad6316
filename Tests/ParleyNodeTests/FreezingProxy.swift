import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on loopback that can freeze: it then stops forwarding in both directions, keeps
/// the connections open and stops accepting, as a hung or unplugged peer looks from the other end.
/// It can also cut its connections (close them, both ways) and go on accepting, as a cable pulled
/// and plugged in again looks; it counts the bytes it forwarded from the connecting side.
final class FreezingProxy: Sendable {
    private let frozen = Atomic<Bool>(false)
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
            .childChannelOption(.autoRead, value: true)
            .childChannelInitializer { inbound in
                guard let proxy = box.proxy, let port = proxy.target.withLock({ $0 }) else {
                    return inbound.close()
                }
                return ClientBootstrap(group: inbound.eventLoop)
                    .connect(host: "127.0.0.1", port: port)
                    .flatMap { outbound in
                        proxy.track(inbound)
                        proxy.track(outbound)
                        return outbound.pipeline.addHandler(Forwarder(to: inbound, proxy: proxy)).flatMap {
                            inbound.pipeline.addHandler(Forwarder(to: outbound, proxy: proxy, counting: true))
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

    private func track(_ channel: any Channel) {
        connections.withLock { $0[ObjectIdentifier(channel)] = channel }
        channel.closeFuture.whenComplete { _ in
            self.connections.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(channel)) }
        }
    }

    func freeze() async throws {
        frozen.store(true, ordering: .relaxed)
        try await listener.close()
    }

    var isFrozen: Bool { frozen.load(ordering: .relaxed) }

    private final class Box: @unchecked Sendable {
        // Set once, right after binding, before any connection can be accepted on loopback by the
        // test (which learns the port from the proxy afterwards).
        var proxy: FreezingProxy?
    }

    private final class Forwarder: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer

        private let peer: any Channel
        private let proxy: FreezingProxy
        private let counting: Bool

        init(to peer: any Channel, proxy: FreezingProxy, counting: Bool = false) {
            self.peer = peer
            self.proxy = proxy
            self.counting = counting
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !proxy.isFrozen else { return }
            let bytes = unwrapInboundIn(data)
            if counting { proxy.forwarded.add(bytes.readableBytes, ordering: .relaxed) }
            peer.writeAndFlush(bytes, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !proxy.isFrozen { peer.close(promise: nil) }
            context.fireChannelInactive()
        }
    }
}
