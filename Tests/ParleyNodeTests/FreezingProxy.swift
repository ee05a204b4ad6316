import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on loopback that can freeze: it then stops forwarding in both directions, keeps
/// the connections open and stops accepting, as a hung or unplugged peer looks from the other end.
final class FreezingProxy: Sendable {
    private let frozen = Atomic<Bool>(false)
    private let target = Mutex<Int?>(nil)
    private let listener: any Channel

    var port: Int { listener.localAddress?.port ?? 0 }

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
                        outbound.pipeline.addHandler(Forwarder(to: inbound, proxy: proxy)).flatMap {
                            inbound.pipeline.addHandler(Forwarder(to: outbound, proxy: proxy))
                        }
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        box.proxy = self
    }

    func forward(to port: Int) { target.withLock { $0 = port } }

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

        init(to peer: any Channel, proxy: FreezingProxy) {
            self.peer = peer
            self.proxy = proxy
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !proxy.isFrozen else { return }
            peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !proxy.isFrozen { peer.close(promise: nil) }
            context.fireChannelInactive()
        }
    }
}
