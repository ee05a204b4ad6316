import ParleyWire

import struct Foundation.Data

/// The node a client declares to the server at logon, so that peers can check a direct link
/// against the key the server vouches for and find where to open one.
///
/// The server checks the fields and answers ``/ParleyCore/ParleyError/Code/invalidRequest`` to a logon
/// whose node is malformed (docs/PROTOCOL.md, "Node keys").
public struct NodeAdvertisement: Sendable, Hashable {
    /// Lowercase base32 (RFC 4648 alphabet, no padding) of SHA-256(``publicKey``): 52 characters.
    public var nodeID: String
    /// SubjectPublicKeyInfo DER of the node's P-256 key (91 bytes, uncompressed point).
    public var publicKey: [UInt8]
    /// "host:port" addresses where the node accepts direct links ("[::1]:7421" for IPv6):
    /// at most 8, each at most 128 bytes.
    public var directAddresses: [String]
    /// The user's consent to direct links with this node.
    public var allowsDirectLinks: Bool

    public init(nodeID: String, publicKey: [UInt8], directAddresses: [String] = [], allowsDirectLinks: Bool = false) {
        self.nodeID = nodeID
        self.publicKey = publicKey
        self.directAddresses = directAddresses
        self.allowsDirectLinks = allowsDirectLinks
    }
}

extension Parley_V1_LogonRequest {
    mutating func declare(_ node: NodeAdvertisement) {
        nodePublicKey = Data(node.publicKey)
        nodeID = node.nodeID
        directAddresses = node.directAddresses
        allowDirect = node.allowsDirectLinks
    }
}

extension Parley_V1_RegisterRequest {
    mutating func declare(_ node: NodeAdvertisement) {
        nodePublicKey = Data(node.publicKey)
        nodeID = node.nodeID
        directAddresses = node.directAddresses
        allowDirect = node.allowsDirectLinks
    }
}
