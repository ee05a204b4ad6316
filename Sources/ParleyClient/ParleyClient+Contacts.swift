public import ParleyCore
import ParleyWire

// Contact lists and presence (docs/PROTOCOL.md section 23). Presence changes arrive as
// ParleyClientEvent.presence events.

/// A user's contact list as the server keeps it.
public struct ContactList: Sendable, Hashable {
    /// The contacts, ordered by user ID.
    public var contacts: [Contact]
    /// The most contacts the server keeps for a user.
    public var maximum: Int

    public init(contacts: [Contact], maximum: Int) {
        self.contacts = contacts
        self.maximum = maximum
    }
}

extension ParleyClient {
    /// The logged-on user's contact list, ordered by user ID, and the largest list the server keeps.
    public func contacts() async throws(ParleyError) -> ContactList {
        let list: Parley_V1_ContactList = try await request(.getContacts, Parley_V1_Empty())
        return ContactList(contacts: list.contacts.compactMap(\.contact), maximum: Int(list.maximum))
    }

    /// Adds `user` to the contact list, or changes how an existing entry's name is shown.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `userNotFound` for an unknown user,
    ///   `tooManyContacts` for a full list, `contactRefused` when the server application vetoes it.
    @discardableResult
    public func addContact(_ user: UserID, displayName: ContactDisplayName = .userName) async throws(ParleyError)
        -> Contact
    {
        try displayName.validate()
        let response: Parley_V1_ContactResponse = try await request(
            .addContact, Parley_V1_ContactRequest(user, displayName: displayName))
        return try Self.contact(in: response)
    }

    /// Changes how a contact's name is shown.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `contactNotFound` if `user` is not a contact.
    @discardableResult
    public func updateContact(_ user: UserID, displayName: ContactDisplayName) async throws(ParleyError) -> Contact {
        try displayName.validate()
        let response: Parley_V1_ContactResponse = try await request(
            .updateContact, Parley_V1_ContactRequest(user, displayName: displayName))
        return try Self.contact(in: response)
    }

    /// Removes `user` from the contact list.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `contactNotFound` if it is not there.
    public func removeContact(_ user: UserID) async throws(ParleyError) {
        var request = Parley_V1_UserIdRequest()
        request.userID = user.rawValue
        let _: Parley_V1_Empty = try await self.request(.removeContact, request)
    }

    /// Shows `state` and `text` to the users who have this user in their contacts, now and at
    /// later logons.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidPresence` for
    ///   ``/ParleyCore/PresenceState/offline`` or a text that is too long or has control characters.
    public func setPresence(_ state: PresenceState, text: String = "") async throws(ParleyError) {
        try Presence.validateChoice(state: state, text: text)
        var request = Parley_V1_PresenceRequest()
        request.state = state.wire
        request.text = text
        let _: Parley_V1_Empty = try await self.request(.setPresence, request)
    }

    private static func contact(in response: Parley_V1_ContactResponse) throws(ParleyError) -> Contact {
        guard let contact = response.contact.contact else {
            throw ParleyError(
                code: .protocolViolation, message: "the server answered a contact with an unknown display rule")
        }
        return contact
    }
}
