import ParleyCore
import ParleyServerStore
import ParleyWire

/// The user directory: USER_EXISTS, FIND_USER_ID, FIND_USERS, USER_ONLINE, GET_USER_INFO
/// (docs/PROTOCOL.md section 10). Read-only queries, run on the blocking pool side by side.
final class DirectoryFamily: RequestFamily, Sendable {
    private static let types: [FrameType] = [.userExists, .findUserID, .findUsers, .userOnline, .getUserInfo]

    var requestTypes: [FrameType] { Self.types }

    func handle(_ frame: Frame, in session: SessionContext) throws(ParleyError) {
        switch frame.type {
        case .userExists:
            let request: Parley_V1_UserIdRequest = try frame.decodeMeta()
            session.query(frame) { server throws(ParleyError) in
                var response = Parley_V1_BoolResponse()
                response.value = try server.store.userExists(UserID(request.userID))
                return response
            }
        case .findUserID:
            let request: Parley_V1_FindUserIdRequest = try frame.decodeMeta()
            session.query(frame) { server throws(ParleyError) in
                var response = Parley_V1_FindUserIdResponse()
                response.userIds = try server.store.userIDs(
                    named: request.userName.trimmingWhitespace()
                )
                .map(\.rawValue)
                return response
            }
        case .findUsers:
            let query = try frame.decodeMeta(as: Parley_V1_FindUsersRequest.self).userQuery()
            let online = query.online == .any ? [] : session.server.registry.onlineUsers
            session.query(frame) { server throws(ParleyError) in
                try Self.findUsers(query, onlineUserIDs: online, server: server)
            }
        case .userOnline:
            _ = try session.requireUser()
            let request: Parley_V1_UserIdRequest = try frame.decodeMeta()
            let user = UserID(request.userID)
            session.query(frame) { server throws(ParleyError) in
                guard try server.store.userExists(user) else {
                    throw ParleyError(code: .userNotFound, message: "no user \(user)")
                }
                var response = Parley_V1_BoolResponse()
                response.value = server.registry.isOnline(user)
                return response
            }
        case .getUserInfo:
            _ = try session.requireUser()
            let request: Parley_V1_UserIdRequest = try frame.decodeMeta()
            let user = UserID(request.userID)
            session.query(frame) { server throws(ParleyError) in
                guard var info = try server.store.user(user)?.info else {
                    throw ParleyError(code: .userNotFound, message: "no user \(user)")
                }
                info.isOnline = server.registry.isOnline(user)
                var response = Parley_V1_UserInfoResponse()
                response.user = Parley_V1_UserInfo(info)
                return response
            }
        default:
            throw ParleyError(code: .unknownRequest, message: "unknown frame type \(frame.type)")
        }
    }

    private static func findUsers(
        _ query: UserQuery,
        onlineUserIDs online: Set<UserID>,
        server: ServerContext
    ) throws(ParleyError) -> Parley_V1_FindUsersResponse {
        let result = try server.store.findUsers(query, onlineUserIDs: online)
        var response = Parley_V1_FindUsersResponse()
        response.truncated = result.truncated
        // Keep the answer within the frame size: long non-ASCII names can make 1000
        // users larger than a frame. What does not fit is reported as truncated.
        let budget = server.configuration.maximumFrameSize - Frame.headerSize - 64
        var size = 0
        for var user in result.users {
            user.isOnline = server.registry.isOnline(user.userID)
            let wire = Parley_V1_UserInfo(user)
            let entrySize = ((try? wire.serializedBytes() as [UInt8])?.count ?? 0) + 5
            guard size + entrySize <= budget else {
                response.truncated = true
                break
            }
            size += entrySize
            response.users.append(wire)
        }
        return response
    }
}
