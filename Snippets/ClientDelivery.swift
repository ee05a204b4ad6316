// Sending so that nothing is lost or duplicated, and reading results, receipts and messages.
import ParleyClient
import ParleyCore

// snippet.hide
let configuration = ParleyClient.Configuration(host: "127.0.0.1", port: 7420)
// snippet.show

try await withParleyClient(configuration: configuration) { client in
    try await client.logOn(userID: 1000, password: "secret")

    // snippet.send
    // Choose the ID first and keep it with the message: sending it again with the same ID
    // never delivers it twice.
    let id = MessageID.random()
    var results: [DeliveryResult] = []
    while results.isEmpty {
        do {
            results = try await client.send(.text("order 42 shipped"), to: [1001, 1002], id: id, wantReceipt: true)
        } catch let error as ParleyError where error.code == .timedOut {
            // No answer within the request timeout (the client resent it after every reconnect
            // meanwhile): the server may or may not have it. Send it again, with the same ID.
            try await Task.sleep(for: .seconds(5))
        }
    }
    for result in results {
        switch result.status {
        case .acceptedOnline, .acceptedOffline:
            // Stored durably. `duplicate`: an earlier send of this ID got there first.
            print("\(result.recipient): stored\(result.duplicate ? " before" : "")")
        case .acceptedByServer:
            print("in the server application's queue (not stored)")
        case .failed(let error):
            print("\(result.recipient): refused, \(error.code)")  // recipient-not-found, say
        }
    }
    // snippet.end

    // snippet.receive
    for await event in client.events {
        switch event {
        case .message(let message):
            // Taking the message from `events` acknowledges it to the server.
            print("\(message.sender) sent message \(message.id) at \(message.sentAt)")
        case .deliveryReceipt(let receipt):
            print("user \(receipt.recipient) took message \(receipt.messageID) at \(receipt.acknowledgedAt)")
        case .connectionStateChanged, .serverShuttingDown, .sessionReplaced, .presence, .command, .transferOffered,
            .transferStatus:
            continue
        }
    }
    // snippet.end
}
