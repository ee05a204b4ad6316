import Foundation
import ParleyCore
import ParleyLink
import Testing

/// SHA-256 of no bytes, in lowercase base32 without padding.
private let emptyDigest = "4oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkq"

@Suite("Node IDs")
struct NodeIDTests {
    @Test("a node ID is the base32 SHA-256 of the public key")
    func knownAnswer() {
        let id = NodeID(subjectPublicKeyInfo: [])
        #expect(id.description == emptyDigest)
        #expect(id.description.count == NodeID.canonicalLength)
        #expect(id.digest.count == 32)
    }

    @Test("the text form round-trips, ignoring case and group separators")
    func textRoundTrip() throws {
        let id = NodeID(subjectPublicKeyInfo: Array("some key".utf8))
        #expect(NodeID(id.description) == id)
        #expect(NodeID(id.description.uppercased()) == id)
        #expect(NodeID(id.groupedDescription) == id)
        #expect(id.groupedDescription.split(separator: "-").count == 13)
        #expect(NodeID(id.groupedDescription.replacingOccurrences(of: "-", with: " ")) == id)
    }

    @Test(
        "malformed text is refused",
        arguments: [
            "",
            String(emptyDigest.dropLast()),
            emptyDigest + "a",
            "1" + String(emptyDigest.dropFirst()),
            "=" + String(emptyDigest.dropFirst()),
            // The last character carries one bit: "r" (17) has trailing bits set.
            String(emptyDigest.dropLast()) + "r",
        ]
    )
    func malformed(text: String) {
        #expect(NodeID(text) == nil)
    }

    @Test("a node ID encodes as its canonical string")
    func codable() throws {
        let id = NodeID(subjectPublicKeyInfo: Array("another key".utf8))
        let data = try JSONEncoder().encode([id])
        #expect(String(decoding: data, as: UTF8.self) == "[\"\(id.description)\"]")
        #expect(try JSONDecoder().decode([NodeID].self, from: data) == [id])
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([NodeID].self, from: Data("[\"not-an-id\"]".utf8))
        }
    }
}
