package import ParleyCore

import struct Foundation.Data
import struct Foundation.Date

// Conversions between the message history meta types (docs/PROTOCOL.md section 25) and
// ParleyCore's HistoryQuery, HistoryEntry and HistoryPage.

extension Parley_V1_SearchHistoryRequest {
    package init(_ query: HistoryQuery) {
        self.init()
        senders = query.senders.map(\.rawValue).sorted()
        recipients = query.recipients.map(\.rawValue).sorted()
        conversationWith = query.conversationWith.map(\.rawValue).sorted()
        sentAfterMs = query.sentAfter?.millisecondsSince1970 ?? 0
        sentBeforeMs = query.sentBefore?.millisecondsSince1970 ?? 0
        deliveredAfterMs = query.deliveredAfter?.millisecondsSince1970 ?? 0
        deliveredBeforeMs = query.deliveredBefore?.millisecondsSince1970 ?? 0
        if let filter = query.text {
            text = filter.text
            textMatch =
                switch filter.match {
                case .contains: .contains
                case .prefix: .prefix
                case .exact: .exact
                }
        }
        kinds = query.kinds.map { Parley_V1_HistoryKind($0) }.sorted { $0.rawValue < $1.rawValue }
        delivery =
            switch query.delivery {
            case .any: .any
            case .delivered: .delivered
            case .undelivered: .undelivered
            }
        oldestFirst = query.order == .oldestFirst
        limit = UInt32(clamping: query.limit)
        cursor = query.cursor ?? ""
    }

    /// The query, checked.
    ///
    /// - Throws: ``/ParleyCore/ParleyError`` with code `invalidRequest` for an unknown
    ///   enumeration value or a filter the protocol does not allow.
    package func query() throws(ParleyError) -> HistoryQuery {
        var query = HistoryQuery(
            senders: Set(senders.map(UserID.init(rawValue:))),
            recipients: Set(recipients.map(UserID.init(rawValue:))),
            conversationWith: Set(conversationWith.map(UserID.init(rawValue:))),
            order: oldestFirst ? .oldestFirst : .newestFirst,
            limit: limit == 0 ? HistoryQuery.defaultLimit : Int(min(limit, UInt32(HistoryQuery.maximumLimit)))
        )
        if sentAfterMs != 0 { query.sentAfter = Date(millisecondsSince1970: sentAfterMs) }
        if sentBeforeMs != 0 { query.sentBefore = Date(millisecondsSince1970: sentBeforeMs) }
        if deliveredAfterMs != 0 { query.deliveredAfter = Date(millisecondsSince1970: deliveredAfterMs) }
        if deliveredBeforeMs != 0 { query.deliveredBefore = Date(millisecondsSince1970: deliveredBeforeMs) }
        if !text.isEmpty {
            let match: HistoryQuery.TextMatch
            switch textMatch {
            case .contains: match = .contains
            case .prefix: match = .prefix
            case .exact: match = .exact
            case .UNRECOGNIZED(let raw):
                throw ParleyError(code: .invalidRequest, message: "unknown text match \(raw)")
            }
            query.text = HistoryQuery.TextFilter(match, text)
        }
        for kind in kinds {
            query.kinds.insert(try kind.kind)
        }
        switch delivery {
        case .any: query.delivery = .any
        case .delivered: query.delivery = .delivered
        case .undelivered: query.delivery = .undelivered
        case .UNRECOGNIZED(let raw):
            throw ParleyError(code: .invalidRequest, message: "unknown delivery filter \(raw)")
        }
        if !cursor.isEmpty { query.cursor = cursor }
        try query.validate()
        return query
    }
}

extension Parley_V1_HistoryKind {
    package init(_ kind: HistoryKind) {
        switch kind {
        case .text: self = .text
        case .binary: self = .binary
        case .file: self = .file
        }
    }

    package var kind: HistoryKind {
        get throws(ParleyError) {
            switch self {
            case .text: return .text
            case .binary: return .binary
            case .file: return .file
            case .UNRECOGNIZED(let raw):
                throw ParleyError(code: .invalidRequest, message: "unknown history kind \(raw)")
            }
        }
    }
}

extension Parley_V1_HistoryPage {
    package init(_ page: HistoryPage) {
        self.init()
        entries = page.entries.map(Parley_V1_HistoryEntry.init)
        nextCursor = page.nextCursor ?? ""
    }

    /// The page; an entry of a kind this version does not know is a protocol violation.
    package func page() throws(ParleyError) -> HistoryPage {
        var converted: [HistoryEntry] = []
        converted.reserveCapacity(entries.count)
        for entry in entries {
            let kind: HistoryKind
            do throws(ParleyError) {
                kind = try entry.kind.kind
            } catch {
                throw ParleyError(
                    code: .protocolViolation, message: "the server sent a history entry of \(error.message)")
            }
            converted.append(
                HistoryEntry(
                    messageID: MessageID(entry.messageID),
                    sender: UserID(entry.sender),
                    recipient: UserID(entry.recipient),
                    kind: kind,
                    body: Array(entry.body),
                    sentAt: Date(millisecondsSince1970: entry.sentAtMs),
                    deliveredAt: entry.deliveredAtMs == 0 ? nil : Date(millisecondsSince1970: entry.deliveredAtMs)
                )
            )
        }
        return HistoryPage(entries: converted, nextCursor: nextCursor.isEmpty ? nil : nextCursor)
    }
}

extension Parley_V1_HistoryEntry {
    package init(_ entry: HistoryEntry) {
        self.init()
        messageID = entry.messageID.rawValue
        sender = entry.sender.rawValue
        recipient = entry.recipient.rawValue
        kind = Parley_V1_HistoryKind(entry.kind)
        sentAtMs = entry.sentAt.millisecondsSince1970
        deliveredAtMs = entry.deliveredAt?.millisecondsSince1970 ?? 0
        body = Data(entry.body)
    }
}
