import ParleyCore

/// One recipient's result of a send, as `send` and `chat` print it.
struct DeliveryRecord: Encodable {
    var event = "result"
    var messageID: UInt64
    var recipient: UInt32
    /// "accepted-online", "accepted-offline", "accepted-by-server" or "failed".
    var status: String
    var duplicate: Bool
    /// The failure's code name ("recipient-not-found"), for failures.
    var error: String?
    var message: String?

    init(_ result: DeliveryResult, messageID: MessageID) {
        self.messageID = messageID.rawValue
        recipient = result.recipient.rawValue
        duplicate = result.duplicate
        switch result.status {
        case .acceptedOnline:
            status = "accepted-online"
        case .acceptedOffline:
            status = "accepted-offline"
        case .acceptedByServer:
            status = "accepted-by-server"
        case .failed(let failure):
            status = "failed"
            error = failure.code.name
            message = failure.message
        }
    }

    /// "1001 accepted-online" or "1002 failed recipient-not-found: no user 1002".
    var line: String {
        var text = "\(recipient) \(status)"
        if let error { text += " \(error): \(message ?? "")" }
        if duplicate { text += " (duplicate)" }
        return text
    }
}
