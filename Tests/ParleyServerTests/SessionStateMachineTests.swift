import NIOCore
import ParleyCore
import ParleyWire
import Testing

@testable import ParleyServer

@Suite("The session protocol as a state machine")
struct SessionStateMachineTests {
    private func makeMachine(maximumUnanswered: Int = 4) -> SessionStateMachine {
        SessionStateMachine(flow: RequestFlow(maximumUnanswered: maximumUnanswered, maximumQueries: 2))
    }

    private func frame(_ type: FrameType, _ requestID: UInt32) -> Frame {
        Frame(type: type, requestID: requestID, meta: ByteBuffer(), payload: ByteBuffer())
    }

    /// A machine whose HELLO was accepted.
    private func makeGuest() -> SessionStateMachine {
        var machine = makeMachine()
        let hello = frame(.hello, 1)
        let received1 = machine.received(hello)
        #expect(received1 == .hello(hello))
        machine.helloAccepted()
        return machine
    }

    @Test("the first frame must be HELLO; after it requests route as a guest's")
    func handshake() {
        var refused = makeMachine()
        let action = refused.received(frame(.logOn, 1))
        guard case .fail(let error) = action else {
            Issue.record("expected a fatal error, got \(action)")
            return
        }
        #expect(error.code == .handshakeRequired)

        var machine = makeGuest()
        #expect(machine.state == .guest)
        let query = frame(.userExists, 2)
        let received2 = machine.received(query)
        #expect(received2 == .route(query, .guest))
        // A second HELLO is a request like any other: the router refuses it.
        let again = frame(.hello, 3)
        let received3 = machine.received(again)
        #expect(received3 == .route(again, .guest))
    }

    @Test("frames wait while a logon is checked and then route as the logged-on user")
    func framesHeldDuringLogOn() {
        var machine = makeGuest()
        let logOn = frame(.logOn, 2)
        let received4 = machine.received(logOn)
        #expect(received4 == .route(logOn, .guest))
        machine.sessionChangeStarted()
        let send = frame(.sendMessage, 3)
        let received5 = machine.received(send)
        #expect(received5 == .none)
        #expect(!machine.mayRead)

        machine.claimed(7)
        #expect(machine.state == .loggingOn(7))
        #expect(machine.sessionUser == 7)
        #expect(machine.identity == .guest)
        let loggedOn6 = machine.loggedOn(7)
        #expect(loggedOn6)
        #expect(machine.identity == .user(7))
        let next7 = machine.next()
        #expect(next7 == nil, "still busy until the session change ends")

        machine.sessionChangeEnded()
        let next8 = machine.next()
        #expect(next8 == .route(send, .user(7)))
        let next9 = machine.next()
        #expect(next9 == nil)
        #expect(machine.mayRead)
    }

    @Test("a logon taken over before it completes does not complete and holds no session")
    func takenOverWhileLoggingOn() {
        var machine = makeGuest()
        machine.claimed(7)
        let replaced10 = machine.replaced()
        #expect(replaced10 == .abandonLogOn)
        #expect(!machine.mayComplete(7))
        let loggedOn11 = machine.loggedOn(7)
        #expect(!loggedOn11)
        #expect(machine.state == .guest)
        let endSession12 = machine.endSession()
        #expect(endSession12 == nil, "the registry entry belongs to the other connection now")
    }

    @Test("a logged-on session taken over closes; the registry entry is released at the close")
    func takenOverWhileLoggedOn() {
        var machine = makeGuest()
        machine.claimed(9)
        let loggedOn13 = machine.loggedOn(9)
        #expect(loggedOn13)
        let replaced14 = machine.replaced()
        #expect(replaced14 == .closeReplaced)
        #expect(machine.isClosing)
        #expect(machine.identity == .guest)
        let received15 = machine.received(frame(.sendMessage, 4))
        #expect(received15 == .none)
        let replaced16 = machine.replaced()
        #expect(replaced16 == .none)
        let endSession17 = machine.endSession()
        #expect(endSession17 == SessionStateMachine.EndedSession(user: 9, wasLoggedOn: true))
        #expect(machine.isClosing, "ending the session does not reopen a closing connection")
    }

    @Test("logging off and a failed node record end the session; only a logged-on one was started")
    func endingSessions() {
        var machine = makeGuest()
        machine.claimed(5)
        let endSession18 = machine.endSession()
        #expect(endSession18 == SessionStateMachine.EndedSession(user: 5, wasLoggedOn: false))
        #expect(machine.state == .guest)

        machine.claimed(5)
        let loggedOn19 = machine.loggedOn(5)
        #expect(loggedOn19)
        let endSession20 = machine.endSession()
        #expect(endSession20 == SessionStateMachine.EndedSession(user: 5, wasLoggedOn: true))
        #expect(machine.state == .guest)
        #expect(machine.identity == .guest)
        let endSession21 = machine.endSession()
        #expect(endSession21 == nil)
        let next = frame(.logOn, 8)
        let received22 = machine.received(next)
        #expect(received22 == .route(next, .guest))
    }

    @Test("a logon is claimed only by a guest")
    func claimNeedsGuest() {
        var machine = makeMachine()
        machine.claimed(3)
        #expect(machine.state == .awaitingHello)
        #expect(machine.sessionUser == nil)
        let loggedOn23 = machine.loggedOn(3)
        #expect(!loggedOn23)
    }

    @Test("closing drops what waits and happens once")
    func closing() {
        var machine = makeGuest()
        machine.sessionChangeStarted()
        let received24 = machine.received(frame(.userExists, 2))
        #expect(received24 == .none)
        let close25 = machine.close()
        #expect(close25)
        let close26 = machine.close()
        #expect(!close26)
        machine.sessionChangeEnded()
        let next27 = machine.next()
        #expect(next27 == nil)
        #expect(machine.flow.queuedCount == 0)
        let received28 = machine.received(frame(.userExists, 3))
        #expect(received28 == .none)
    }

    @Test("unanswered requests hold later frames until they are answered")
    func unansweredRequests() {
        var machine = SessionStateMachine(flow: RequestFlow(maximumUnanswered: 1, maximumQueries: 1))
        let received29 = machine.received(frame(.hello, 1))
        #expect(received29 == .hello(frame(.hello, 1)))
        machine.helloAccepted()
        machine.started(query: false)
        let waiting = frame(.findUsers, 2)
        let received30 = machine.received(waiting)
        #expect(received30 == .none)
        machine.answered(query: false)
        let next31 = machine.next()
        #expect(next31 == .route(waiting, .guest))
    }
}

@Suite("Routing requests to families")
struct RequestRouterTests {
    @Test("every request type goes to the one family that declared it")
    func defaultFamilies() {
        let (messages, families) = ServerConnectionHandler.requestFamilies
        let router = RequestRouter(families)
        func family(_ type: FrameType) -> (any RequestFamily)? { router.family(for: type).map { families[$0] } }

        for type in [FrameType.register, .logOn, .logOff, .updateUserInfo, .changePassword] {
            #expect(family(type) is AccountsFamily, "\(type)")
        }
        for type in [FrameType.userExists, .findUserID, .findUsers, .userOnline, .getUserInfo] {
            #expect(family(type) is DirectoryFamily, "\(type)")
        }
        #expect(family(.sendMessage) === messages)
        #expect(family(.ackMessages) === messages)
        for type in [FrameType.getContacts, .addContact, .updateContact, .removeContact, .setPresence] {
            #expect(family(type) is ContactsFamily, "\(type)")
        }
        for type in [FrameType.sendCommand, .commandReply] {
            #expect(family(type) is CommandsFamily, "\(type)")
        }
        for type in [FrameType.hello, .error, .ping, .message, .sendMessage.response, FrameType(rawValue: 0x7FFF)] {
            #expect(family(type) == nil, "\(type)")
        }
    }

    @Test("frames no family handles get the errors the protocol names")
    func unroutable() {
        #expect(ServerConnectionHandler.unroutable(.hello).code == .invalidRequest)
        #expect(ServerConnectionHandler.unroutable(.error).code == .invalidRequest)
        #expect(ServerConnectionHandler.unroutable(.logOn.response).code == .invalidRequest)
        #expect(ServerConnectionHandler.unroutable(FrameType(rawValue: 0x0077)).code == .unknownRequest)
    }

    @Test("a new family plugs in beside the built-in ones")
    func newFamily() {
        final class Echo: RequestFamily {
            var requestTypes: [FrameType] { [FrameType(rawValue: 0x00F0)] }
            func handle(_ frame: Frame, in session: SessionContext) throws(ParleyError) {}
        }
        let echo = Echo()
        let builtIn = ServerConnectionHandler.requestFamilies.all
        let router = RequestRouter(builtIn + [echo])
        #expect(router.family(for: FrameType(rawValue: 0x00F0)) == builtIn.count)
        #expect(router.family(for: .sendMessage) == 2)
    }
}
