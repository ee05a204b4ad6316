// swift-tools-version:6.2
import PackageDescription

// Settings shared by every Parley target: Swift 6 language mode (the tools version's default),
// warnings are errors, imports are internal unless a target re-exports a type on purpose.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("ExistentialAny"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "Parley",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ParleyCore", targets: ["ParleyCore"]),
        .library(name: "ParleyWire", targets: ["ParleyWire"]),
        .library(name: "ParleyServer", targets: ["ParleyServer"]),
        .library(name: "ParleyClient", targets: ["ParleyClient"]),
        .library(name: "ParleyDiscovery", targets: ["ParleyDiscovery"]),
        .library(name: "ParleyAvahi", targets: ["ParleyAvahi"]),
        .library(name: "ParleyNode", targets: ["ParleyNode"]),
        .library(name: "ParleyTesting", targets: ["ParleyTesting"]),
        .executable(name: "parley", targets: ["ParleyCLI"]),
        .executable(name: "parley-discovery-probe", targets: ["ParleyDiscoveryProbe"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        // `swift package generate-documentation` (scripts/docs.sh); no target depends on it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // Vocabulary: identifiers, user info, messages, errors. No NIO, no I/O.
        .target(name: "ParleyCore", swiftSettings: strict),
        // Frames <-> typed protocol messages; the protobuf schema's generated code lives here.
        .target(
            name: "ParleyWire",
            dependencies: [
                "ParleyCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Generated/README.md"],
            swiftSettings: strict
        ),
        // One framed session over a channel: pipeline set-up, keep-alive, request correlation.
        .target(
            name: "ParleyLink",
            dependencies: [
                "ParleyCore", "ParleyWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        // SQLite (GRDB) shared by the stores: opening and migrating a file, transactions, prepared
        // statements, column decoding, user search and the history table both stores keep.
        .target(
            name: "ParleySQLite",
            dependencies: [
                "ParleyCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                // SQLite's C interface, for the few statements run per message (RawStatement).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: strict
        ),
        // The server's store behind domain APIs: users, the message queue, contacts, commands,
        // transfers, resumption tokens, and the history journal and store.
        .target(
            name: "ParleyServerStore",
            dependencies: [
                "ParleyCore", "ParleySQLite",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // A LAN node's registry behind domain APIs: users and nodes it learned, pinned keys, the
        // outbox, the inbox, receipts, contacts and history.
        .target(
            name: "ParleyNodeStore",
            dependencies: [
                "ParleyCore", "ParleySQLite",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ParleyServer",
            dependencies: [
                "ParleyCore", "ParleyWire", "ParleyLink", "ParleyServerStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ParleyClient",
            dependencies: [
                "ParleyCore", "ParleyWire", "ParleyLink",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // SHA-256 of transferred files.
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ParleyCLI",
            dependencies: [
                "ParleyCore", "ParleyServer", "ParleyClient", "ParleyWire",
                "ParleyNode", "ParleyAvahi", "ParleyDiscovery", "ParleyLink",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strict
        ),
        // LAN discovery: the seam (no C), and its Avahi implementation, the only importer of CAvahi.
        // Helpers of the test targets: a real server on port 0, recording clients, a fake LAN,
        // waits with deadlines, temporary directories, child processes started with posix_spawn
        // (Foundation's Process crashes now and then in this toolchain). No production target
        // depends on it.
        .target(
            name: "ParleyTesting",
            dependencies: [
                "ParleyCore", "ParleyServer", "ParleyClient", "ParleyDiscovery",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .systemLibrary(name: "CAvahi", pkgConfig: "avahi-client", providers: [.apt(["libavahi-client-dev"])]),
        .target(name: "ParleyDiscovery", dependencies: ["ParleyCore"], swiftSettings: strict),
        .target(
            name: "ParleyAvahi",
            dependencies: [
                "CAvahi", "ParleyCore", "ParleyDiscovery", .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The SDK facade: server client + discovery (injected) + direct links + registry cache + routing.
        .target(
            name: "ParleyNode",
            dependencies: [
                "ParleyCore", "ParleyWire", "ParleyLink", "ParleyNodeStore", "ParleyClient", "ParleyDiscovery",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Publishes a record and prints peer events as JSON lines; driven by the LAN-lab tests.
        .executableTarget(
            name: "ParleyDiscoveryProbe",
            dependencies: [
                "ParleyCore", "ParleyDiscovery", "ParleyAvahi", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Examples use only public products, so they cannot rot.
        .executableTarget(
            name: "example-echo-bot",
            dependencies: ["ParleyServer", "ParleyClient", "ParleyCore"],
            path: "examples/echo-bot",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "example-notice-bot",
            dependencies: ["ParleyServer", "ParleyClient", "ParleyCore"],
            path: "examples/notice-bot",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "example-node-pair",
            dependencies: [
                "ParleyServer", "ParleyClient", "ParleyCore", "ParleyNode",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "examples/node-pair",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ParleyWireTests",
            dependencies: [
                "ParleyCore", "ParleyWire", "ParleyLink",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ParleyLinkTests",
            dependencies: [
                "ParleyCore", "ParleyWire", "ParleyLink",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LANTests",
            dependencies: ["ParleyCore", "ParleyDiscovery", "ParleyAvahi", "ParleyTesting"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ParleyStoreTests",
            dependencies: [
                "ParleyCore", "ParleySQLite", "ParleyServerStore", "ParleyNodeStore", "ParleyTesting",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ParleyServerTests",
            dependencies: [
                "ParleyCore", "ParleyWire", "ParleyServerStore", "ParleyServer", "ParleyTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ParleyNodeTests",
            dependencies: [
                "ParleyCore", "ParleyLink", "ParleyNodeStore", "ParleyClient", "ParleyDiscovery", "ParleyServer",
                "ParleyNode", "ParleyWire", "ParleyTesting",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "CLITests", dependencies: ["ParleyCore", "ParleyTesting"], swiftSettings: strict),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "ParleyCore", "ParleyWire", "ParleyServer", "ParleyClient", "ParleyLink", "ParleyServerStore",
                "ParleyTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ],
            swiftSettings: strict
        ),
    ]
)
