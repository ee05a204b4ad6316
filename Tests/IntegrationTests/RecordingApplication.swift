import ParleyCore
import ParleyServer
import ParleyTesting

/// A server application that records what users send to the server and, if asked, answers.
final class RecordingApplication: ParleyServerApplication {
    let received = Mailbox<Message>()
    /// What the answers' delivery looked like.
    let replies = Mailbox<[DeliveryResult]>()
    let answers: Bool

    init(answers: Bool) {
        self.answers = answers
    }

    func receive(_ message: Message, from server: ParleyServer) async {
        received.append(message)
        guard answers, case .text(let text) = message.body else { return }
        do {
            replies.append(try await server.send(.text("re: \(text)"), to: [message.sender]))
        } catch {
            replies.append([DeliveryResult(recipient: message.sender, status: .failed(error))])
        }
    }
}
