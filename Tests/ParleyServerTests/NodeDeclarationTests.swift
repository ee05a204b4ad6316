import Foundation
import ParleyCore
import Testing

@testable import ParleyServer

@Suite("NodeDeclaration")
struct NodeDeclarationTests {
    /// The P-256 public key of private key 1 (the generator point) and its node ID, computed with
    /// Python's `cryptography`, `hashlib` and `base64` (docs/PROTOCOL.md, section 17.5).
    static let key = Data(
        hexString: "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
            + "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
            + "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
    )
    static let nodeID = "ltjff6ym5cjsinx27dgncbajqg4j5zfnnop6tyvcw7trvlfsptjq"

    @Test("base32 follows RFC 4648 (lower case, no padding)")
    func base32() {
        let vectors = ["": "", "f": "my", "fo": "mzxq", "foo": "mzxw6", "foob": "mzxw6yq", "fooba": "mzxw6ytb"]
        for (input, expected) in vectors {
            #expect(NodeDeclaration.base32(Array(input.utf8)) == expected)
        }
        #expect(NodeDeclaration.base32(Array("foobar".utf8)) == "mzxw6ytboi")
        #expect(NodeDeclaration.nodeID(for: Self.key) == Self.nodeID)
    }

    @Test("a well-formed node is accepted as declared; no node fields is no node")
    func accepted() throws {
        let addresses = ["10.0.0.1:1", "host.example:65535", "[fe80::1%eth0]:7421", "[::1]:7421"]
        let node = try NodeDeclaration.validated(
            publicKey: Self.key, nodeID: Self.nodeID, directAddresses: addresses, allowsDirect: true)
        #expect(
            node
                == NodeDeclaration(
                    nodeID: Self.nodeID, publicKey: [UInt8](Self.key), directAddresses: addresses, allowsDirect: true)
        )
        #expect(
            try NodeDeclaration.validated(publicKey: Data(), nodeID: "", directAddresses: [], allowsDirect: false)
                == nil)
    }

    @Test(
        "malformed addresses are refused",
        arguments: [
            "", ":7421", "host", "host:", "host:0", "host:65536", "host:007421", "host:+80", "host:8 0", "ho st:80",
            "host:80\n", "fe80::1:80", "[fe80::1:80", "host\u{85}:80",
        ]
    )
    func malformedAddress(address: String) {
        let error = #expect(throws: ParleyError.self) {
            try NodeDeclaration.validated(
                publicKey: Self.key, nodeID: Self.nodeID, directAddresses: [address], allowsDirect: true)
        }
        #expect(error?.code == .invalidRequest)
    }
}

extension Data {
    fileprivate init(hexString: String) {
        var bytes: [UInt8] = []
        var index = hexString.startIndex
        while index < hexString.endIndex {
            let next = hexString.index(index, offsetBy: 2)
            bytes.append(UInt8(hexString[index..<next], radix: 16) ?? 0)
            index = next
        }
        self.init(bytes)
    }
}
