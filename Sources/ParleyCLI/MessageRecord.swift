import Foundation
import ParleyCore

/// A received message as `receive`, `send --receipt` and `chat` print it.
struct MessageRecord: Encodable {
    var event = "message"
    var id: UInt64
    var sender: UInt32
    var recipients: [UInt32]
    var kind: String
    var text: String?
    var base64: String?
    var sentAt: Date
    var deliveredAt: Date

    init(_ message: Message) {
        id = message.id.rawValue
        sender = message.sender.rawValue
        recipients = message.recipients.map(\.rawValue)
        sentAt = message.sentAt
        deliveredAt = message.deliveredAt
        (kind, text, base64) = Self.fields(of: message.body)
    }

    /// "1001 -> 1000,1002 [8812...] hello"; line breaks in text are escaped to keep one line.
    var line: String {
        let to = recipients.map(String.init).joined(separator: ",")
        return "\(sender) -> \(to) [\(id)] \(content)"
    }

    /// "[from 1001] hello", for chat.
    var chatLine: String {
        "[from \(sender)] \(content)"
    }

    private var content: String { Self.content(text: text, base64: base64) }

    /// A body as the records print it: its kind ("text" or "binary"), and its text or base64.
    static func fields(of body: MessageBody) -> (kind: String, text: String?, base64: String?) {
        switch body {
        case .text(let text): ("text", text, nil)
        case .binary(let bytes): ("binary", nil, Data(bytes).base64EncodedString())
        }
    }

    /// A message body on one line: text with line breaks escaped; binary as its size and base64.
    static func content(text: String?, base64: String?) -> String {
        if let text {
            return text.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\n", with: "\\n")
                .replacingOccurrences(of: "\r", with: "\\r")
        }
        let count = base64.flatMap { Data(base64Encoded: $0)?.count } ?? 0
        return "\(count) bytes base64:\(base64 ?? "")"
    }
}
