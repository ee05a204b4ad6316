package import ParleyCore

import struct Foundation.Date

// Conversions between the contact and presence meta types (docs/PROTOCOL.md section 23) and
// ParleyCore's vocabulary. Enumerations travel by number: PresenceState.wireValue and
// ContactDisplayName.wireValue are the proto enums' values.

extension Parley_V1_Contact {
    package init(_ contact: Contact) {
        self.init()
        userID = contact.userID.rawValue
        displayRule = Parley_V1_ContactDisplayRule(rawValue: Int(contact.displayName.wireValue)) ?? .UNRECOGNIZED(0)
        customName = contact.displayName.customName
        addedAtMs = contact.addedAt.millisecondsSince1970
        user = Parley_V1_UserInfo(contact.info)
    }

    /// The entry, or nil when its rule is one this version does not know.
    package var contact: Contact? {
        guard
            let displayName = ContactDisplayName(
                wireValue: UInt32(truncatingIfNeeded: displayRule.rawValue), customName: customName)
        else { return nil }
        return Contact(
            userID: UserID(userID),
            displayName: displayName,
            addedAt: Date(millisecondsSince1970: addedAtMs),
            info: user.userInfo
        )
    }
}

extension Parley_V1_ContactRequest {
    package init(_ user: UserID, displayName: ContactDisplayName) {
        self.init()
        userID = user.rawValue
        displayRule = Parley_V1_ContactDisplayRule(rawValue: Int(displayName.wireValue)) ?? .UNRECOGNIZED(0)
        customName = displayName.customName
    }

    /// The requested rule, checked.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidRequest` for an unknown rule or a
    ///   bad custom name.
    package func displayName() throws(ParleyError) -> ContactDisplayName {
        guard
            let rule = ContactDisplayName(
                wireValue: UInt32(truncatingIfNeeded: displayRule.rawValue), customName: customName)
        else {
            throw ParleyError(code: .invalidRequest, message: "unknown contact display rule \(displayRule.rawValue)")
        }
        if case .custom = rule {
            try rule.validate()
        } else if !customName.isEmpty {
            throw ParleyError(code: .invalidRequest, message: "custom_name is only allowed with DISPLAY_CUSTOM")
        }
        return rule
    }
}

extension PresenceState {
    package init?(wire: Parley_V1_PresenceState) {
        self.init(wireValue: UInt32(truncatingIfNeeded: wire.rawValue))
    }

    package var wire: Parley_V1_PresenceState {
        Parley_V1_PresenceState(rawValue: Int(wireValue)) ?? .UNRECOGNIZED(Int(wireValue))
    }
}

extension Parley_V1_PresenceInfo {
    package init(user: UserID, presence: Presence) {
        self.init()
        userID = user.rawValue
        state = presence.state.wire
        text = presence.text
        sinceMs = presence.since?.millisecondsSince1970 ?? 0
    }

    /// The presence, or nil when its state is one this version does not know.
    package var presence: Presence? {
        guard let state = PresenceState(wire: state) else { return nil }
        return Presence(
            state: state,
            text: text,
            source: .server,
            since: sinceMs == 0 ? nil : Date(millisecondsSince1970: sinceMs)
        )
    }
}

extension Parley_V1_PresenceRequest {
    /// The requested state and text, checked.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidPresence` for OFFLINE, an unknown
    ///   state or a bad text.
    package func choice() throws(ParleyError) -> (state: PresenceState, text: String) {
        guard let chosen = PresenceState(wire: state) else {
            throw ParleyError(code: .invalidPresence, message: "unknown presence state \(state.rawValue)")
        }
        try Presence.validateChoice(state: chosen, text: text)
        return (chosen, text)
    }
}

extension Parley_V1_LogonRequest {
    /// The presence this logon asks to show instead of the user's stored choice; nil for "the
    /// stored choice" (`presence` OFFLINE, the default).
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidPresence` for an unknown state or
    ///   a bad text.
    package func requestedPresence() throws(ParleyError) -> (state: PresenceState, text: String)? {
        guard presence != .presenceOffline else {
            guard presenceText.isEmpty else {
                throw ParleyError(code: .invalidPresence, message: "presence_text needs a presence state")
            }
            return nil
        }
        guard let state = PresenceState(wire: presence) else {
            throw ParleyError(code: .invalidPresence, message: "unknown presence state \(presence.rawValue)")
        }
        try Presence.validateChoice(state: state, text: presenceText)
        return (state, presenceText)
    }
}
