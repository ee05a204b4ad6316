public import Foundation

// File and stream transfer (docs/PROTOCOL.md section 26): the vocabulary shared by the server,
// the client and the command-line tool.

/// Names one transfer of one sender: chosen by the sender, unique among its transfers the server
/// still holds. Starting a transfer again with the same ID resumes it.
public struct TransferID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// A random, practically unique ID (64 random bits, never 0).
    public static func random() -> TransferID {
        TransferID(UInt64.random(in: 1...UInt64.max))
    }

    /// An ID derived from what identifies one sending of a file: the same file (path, size,
    /// modification time) to the same recipient gives the same ID, so sending it again resumes
    /// the earlier transfer instead of starting over (FNV-1a, 64 bits; never 0).
    public static func derived(from parts: [String]) -> TransferID {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in parts.joined(separator: "\u{1F}").utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return TransferID(hash == 0 ? 1 : hash)
    }

    public var description: String { String(rawValue) }
}

/// A file (or stream) the server holds for a user: what a TRANSFER_OFFER event offers.
public struct FileOffer: Sendable, Hashable {
    public var id: TransferID
    public var sender: UserID
    public var recipient: UserID
    /// The name as the sender gave it; ``FileName/sanitized(_:)`` makes it safe for a disk.
    public var name: String
    /// The whole length in bytes.
    public var size: UInt64
    /// The SHA-256 of the whole file, 32 bytes; empty in a node's offer of a file sent directly
    /// by another node (docs/PROTOCOL.md section 26.9), whose hash comes with its end.
    public var sha256: [UInt8]
    /// It was sent as a stream (its length was unknown until its end).
    public var isStream: Bool
    public var createdAt: Date
    /// When the server deletes it if it is not fetched.
    public var expiresAt: Date

    public init(
        id: TransferID,
        sender: UserID,
        recipient: UserID,
        name: String,
        size: UInt64,
        sha256: [UInt8],
        isStream: Bool,
        createdAt: Date,
        expiresAt: Date
    ) {
        self.id = id
        self.sender = sender
        self.recipient = recipient
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.isStream = isStream
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// How a transfer ended (docs/PROTOCOL.md section 26.3, `TransferOutcome`).
public enum TransferOutcome: String, Sendable, Hashable, CaseIterable {
    /// The recipient has the whole file with the right SHA-256.
    case completed
    /// The recipient did not want it.
    case declined
    /// The sender or the recipient gave up.
    case cancelled
    /// The recipient's SHA-256 did not match.
    case failed
    /// Not fetched within the server's retention period.
    case expired
    /// An admin deleted it.
    case deleted

    /// The number on the wire.
    public var wireValue: Int {
        switch self {
        case .completed: 1
        case .declined: 2
        case .cancelled: 3
        case .failed: 4
        case .expired: 5
        case .deleted: 6
        }
    }

    /// The outcome with this wire number, or nil for 0 and numbers this version lacks.
    public init?(wireValue: Int) {
        guard let outcome = Self.allCases.first(where: { $0.wireValue == wireValue }) else { return nil }
        self = outcome
    }
}

/// A TRANSFER_STATUS event: how one of this user's transfers ended.
public struct TransferStatus: Sendable, Hashable {
    public var id: TransferID
    public var sender: UserID
    public var recipient: UserID
    public var outcome: TransferOutcome
    /// A text from whoever ended it (may be empty).
    public var reason: String
    public var at: Date

    public init(
        id: TransferID, sender: UserID, recipient: UserID, outcome: TransferOutcome, reason: String, at: Date
    ) {
        self.id = id
        self.sender = sender
        self.recipient = recipient
        self.outcome = outcome
        self.reason = reason
        self.at = at
    }
}

/// How far a transfer has come, reported while it runs.
public struct TransferProgress: Sendable, Hashable {
    public var id: TransferID
    /// Bytes the other side has acknowledged (sending) or written to disk (receiving).
    public var bytesDone: UInt64
    /// The whole length, when known (nil for a stream until its end).
    public var totalBytes: UInt64?
    /// Where this run started: more than 0 when it resumed an earlier one (an upload also after
    /// picking up again from the server's offset when its connection was lost).
    public var resumedFrom: UInt64
    /// Bytes per second since this run (or its latest resume) started.
    public var bytesPerSecond: Double

    public init(id: TransferID, bytesDone: UInt64, totalBytes: UInt64?, resumedFrom: UInt64, bytesPerSecond: Double) {
        self.id = id
        self.bytesDone = bytesDone
        self.totalBytes = totalBytes
        self.resumedFrom = resumedFrom
        self.bytesPerSecond = bytesPerSecond
    }
}

/// The rules for file names in transfers (docs/PROTOCOL.md section 26.6).
public enum FileName {
    /// The longest name, in UTF-8 bytes.
    public static let maximumBytes = 255

    /// Checks a name as the server does.
    ///
    /// - Throws: ``ParleyError`` with code ``ParleyError/Code/invalidFileName`` for an empty or
    ///   too long name, one starting with a dot, or one holding `/`, `\`, or a control character.
    public static func validate(_ name: String) throws(ParleyError) {
        func refuse(_ why: String) -> ParleyError {
            ParleyError(code: .invalidFileName, message: "the file name \(name.debugDescription) \(why)")
        }
        guard !name.isEmpty else { throw refuse("is empty") }
        guard name.utf8.count <= maximumBytes else { throw refuse("is longer than \(maximumBytes) bytes") }
        guard !name.hasPrefix(".") else { throw refuse("starts with a dot") }
        for scalar in name.unicodeScalars {
            if scalar == "/" || scalar == "\\" { throw refuse("holds a path separator") }
            if scalar.properties.generalCategory == .control { throw refuse("holds a control character") }
        }
    }

    /// A name that is safe to create in a folder: separators and control characters become `_`,
    /// leading dots and spaces go, the length is cut to ``maximumBytes``, and an empty result is
    /// `file`. Valid names come back unchanged.
    public static func sanitized(_ name: String) -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in name.unicodeScalars {
            let unsafe = scalar == "/" || scalar == "\\" || scalar.properties.generalCategory == .control
            scalars.append(unsafe ? "_" : scalar)
        }
        var result = String(scalars)
        while let first = result.first, first == "." || first == " " { result.removeFirst() }
        while result.utf8.count > maximumBytes { result.removeLast() }
        return result.isEmpty ? "file" : result
    }

    /// `name` itself when `exists` says no file has it, else `name (1)`, `name (2)`, ... with the
    /// number before the extension (`report (1).pdf`).
    public static func unused(_ name: String, exists: (String) -> Bool) -> String {
        guard exists(name) else { return name }
        let dot = name.lastIndex(of: ".").flatMap { $0 == name.startIndex ? nil : $0 }
        let stem = dot.map { String(name[..<$0]) } ?? name
        let suffix = dot.map { String(name[$0...]) } ?? ""
        var number = 1
        while true {
            let candidate = "\(stem) (\(number))\(suffix)"
            if !exists(candidate) { return candidate }
            number += 1
        }
    }
}
