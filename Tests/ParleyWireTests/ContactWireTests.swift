import Foundation
import NIOCore
import ParleyCore
import ParleyWire
import Testing

@Suite("Contact and presence meta (docs/PROTOCOL.md section 23)")
struct ContactWireTests {
    private let info = UserInfo(userID: 1002, userName: "bob", firstName: "Bob", lastName: "Brown")

    @Test("a contact survives the wire with its rule, custom name, time and directory record")
    func contactRoundTrip() throws {
        let added = Date(timeIntervalSince1970: 1_700_000_000.5)
        for rule in [ContactDisplayName.userName, .firstName, .lastName, .fullName, .custom("Bobby")] {
            let contact = Contact(userID: 1002, displayName: rule, addedAt: added, info: info)
            let frame = Frame(type: .addContact.response, requestID: 7, message: Parley_V1_Contact(contact))
            let decoded = try frame.decodeMeta(as: Parley_V1_Contact.self)
            #expect(decoded.contact == contact)
        }
    }

    @Test("a contact request's rule is checked: unknown rules, custom names out of bounds or misplaced")
    func contactRequestChecks() throws {
        #expect(try Parley_V1_ContactRequest(1002, displayName: .custom("Bobby")).displayName() == .custom("Bobby"))
        #expect(try Parley_V1_ContactRequest(1002, displayName: .fullName).displayName() == .fullName)

        var unknownRule = Parley_V1_ContactRequest(1002, displayName: .userName)
        unknownRule.displayRule = .UNRECOGNIZED(9)
        var misplacedName = Parley_V1_ContactRequest(1002, displayName: .userName)
        misplacedName.customName = "x"
        var emptyCustom = Parley_V1_ContactRequest(1002, displayName: .userName)
        emptyCustom.displayRule = .displayCustom
        var longCustom = emptyCustom
        longCustom.customName = String(repeating: "e\u{301}", count: 200)
        for request in [unknownRule, misplacedName, emptyCustom, longCustom] {
            let error = #expect(throws: ParleyError.self) { try request.displayName() }
            #expect(error?.code == .invalidRequest)
        }
    }

    @Test("presence: states by number, bad choices refused, unknown states not guessed")
    func presence() throws {
        for state in PresenceState.allCases {
            #expect(PresenceState(wire: state.wire) == state)
        }
        let since = Date(timeIntervalSince1970: 1_700_000_001)
        let info = Parley_V1_PresenceInfo(user: 1002, presence: Presence(state: .away, text: "lunch", since: since))
        #expect(info.presence == Presence(state: .away, text: "lunch", source: .server, since: since))
        var unknown = info
        unknown.state = .UNRECOGNIZED(7)
        #expect(unknown.presence == nil)

        var request = Parley_V1_PresenceRequest()
        request.state = .presenceBusy
        request.text = "in a meeting"
        #expect(try request.choice() == (.busy, "in a meeting"))
        for (state, text) in [
            (Parley_V1_PresenceState.presenceOffline, ""), (.UNRECOGNIZED(9), ""),
            (.presenceAway, String(repeating: "x", count: 257)), (.presenceAway, "a\nb"),
        ] {
            request.state = state
            request.text = text
            let error = #expect(throws: ParleyError.self) { try request.choice() }
            #expect(error?.code == .invalidPresence)
        }
    }

    @Test("the new request metas are decoded strictly: a wrong wire type is refused, naming the field")
    func strict() throws {
        // ContactRequest.user_id (field 1) sent as a LEN field.
        let meta: [UInt8] = [0x0A, 0x01, 0x41]
        let frame = Frame(type: .addContact, requestID: 1, meta: ByteBuffer(bytes: meta))
        let error = #expect(throws: ParleyError.self) { try frame.decodeMeta(as: Parley_V1_ContactRequest.self) }
        #expect(error?.code == .invalidRequest)
        #expect(error?.message.contains("ContactRequest.user_id") == true)
        #expect(FrameType.setPresence.description == "SET_PRESENCE")
        #expect(FrameType.presence.rawValue == 0x0110)
    }
}
