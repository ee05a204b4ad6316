package import ParleyCore

import struct Foundation.Date

// The file transfer meta types (docs/PROTOCOL.md section 26): their strict schemas and the
// conversions to ParleyCore's vocabulary. Outcomes travel by number (TransferOutcome.wireValue).

extension Parley_V1_TransferStart: StrictMeta {
    package static let schema = MetaSchema(
        "TransferStart",
        [
            1: ("transfer_id", .uint64), 2: ("recipient", .uint32), 3: ("name", .string), 4: ("size", .uint64),
            5: ("stream", .bool),
        ])
}

extension Parley_V1_TransferChunk: StrictMeta {
    package static let schema = MetaSchema(
        "TransferChunk", [1: ("transfer_id", .uint64), 2: ("offset", .uint64), 3: ("sender", .uint32)])
}

extension Parley_V1_TransferEnd: StrictMeta {
    package static let schema = MetaSchema(
        "TransferEnd", [1: ("transfer_id", .uint64), 2: ("size", .uint64), 3: ("sha256", .bytes)])
}

extension Parley_V1_TransferRead: StrictMeta {
    package static let schema = MetaSchema(
        "TransferRead",
        [1: ("sender", .uint32), 2: ("transfer_id", .uint64), 3: ("offset", .uint64), 4: ("length", .uint32)])
}

extension Parley_V1_TransferClose: StrictMeta {
    package static let schema = MetaSchema(
        "TransferClose",
        [1: ("sender", .uint32), 2: ("transfer_id", .uint64), 3: ("outcome", .enumeration), 4: ("reason", .string)])
}

extension Parley_V1_TransferOutcome {
    package init(_ outcome: TransferOutcome) {
        self = Parley_V1_TransferOutcome(rawValue: outcome.wireValue) ?? .outcomeNone
    }

    /// The outcome, or nil for OUTCOME_NONE and values this version does not know.
    package var outcome: TransferOutcome? { TransferOutcome(wireValue: rawValue) }
}

extension Parley_V1_TransferInfo {
    /// The offer this entry describes (meaningful once its phase is READY).
    package var offer: FileOffer {
        FileOffer(
            id: TransferID(transferID),
            sender: UserID(sender),
            recipient: UserID(recipient),
            name: name,
            size: size,
            sha256: Array(sha256),
            isStream: stream,
            createdAt: Date(millisecondsSince1970: createdAtMs),
            expiresAt: Date(millisecondsSince1970: expiresAtMs)
        )
    }
}

extension Parley_V1_TransferStatusEvent {
    package init(_ status: TransferStatus) {
        self.init()
        transferID = status.id.rawValue
        sender = status.sender.rawValue
        recipient = status.recipient.rawValue
        outcome = Parley_V1_TransferOutcome(status.outcome)
        reason = status.reason
        atMs = status.at.millisecondsSince1970
    }

    /// The status, or nil when its outcome is one this version does not know.
    package var status: TransferStatus? {
        guard let outcome = outcome.outcome else { return nil }
        return TransferStatus(
            id: TransferID(transferID),
            sender: UserID(sender),
            recipient: UserID(recipient),
            outcome: outcome,
            reason: reason,
            at: Date(millisecondsSince1970: atMs)
        )
    }
}
