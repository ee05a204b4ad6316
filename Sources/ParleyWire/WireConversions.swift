package import ParleyCore

import struct Foundation.Data
import struct Foundation.Date

// Conversions between the protobuf meta types and ParleyCore's vocabulary. Package-level:
// the protobuf types are a wire detail, never public API.

extension Date {
    package init(millisecondsSince1970 ms: Int64) {
        self.init(timeIntervalSince1970: Double(ms) / 1000)
    }

    package var millisecondsSince1970: Int64 {
        Int64((timeIntervalSince1970 * 1000).rounded())
    }
}

extension Parley_V1_UserInfo {
    package init(_ info: UserInfo) {
        self.init()
        userID = info.userID.rawValue
        userName = info.userName
        firstName = info.firstName
        lastName = info.lastName
        organization = info.organization
        department = info.department
        application = info.application
        online = info.isOnline
        registeredAtMs = info.registeredAt?.millisecondsSince1970 ?? 0
        nodeID = info.nodeID ?? ""
        nodePublicKey = Data(info.nodePublicKey ?? [])
        directAddresses = info.directAddresses
        allowDirect = info.allowsDirectLinks
        nodeKeyUpdatedAtMs = info.nodeKeyUpdatedAt?.millisecondsSince1970 ?? 0
    }

    package var userInfo: UserInfo {
        UserInfo(
            userID: UserID(userID),
            userName: userName,
            firstName: firstName,
            lastName: lastName,
            organization: organization,
            department: department,
            application: application,
            isOnline: online,
            registeredAt: registeredAtMs == 0 ? nil : Date(millisecondsSince1970: registeredAtMs),
            nodeID: nodeID.isEmpty ? nil : nodeID,
            nodePublicKey: nodePublicKey.isEmpty ? nil : [UInt8](nodePublicKey),
            directAddresses: directAddresses,
            allowsDirectLinks: allowDirect,
            nodeKeyUpdatedAt: nodeKeyUpdatedAtMs == 0 ? nil : Date(millisecondsSince1970: nodeKeyUpdatedAtMs)
        )
    }
}

extension UserField {
    package init?(wire: Parley_V1_UserField) {
        switch wire {
        case .userName: self = .userName
        case .firstName: self = .firstName
        case .lastName: self = .lastName
        case .organization: self = .organization
        case .department: self = .department
        case .application: self = .application
        case .unspecified, .userID, .UNRECOGNIZED: return nil
        }
    }

    package var wire: Parley_V1_UserField {
        switch self {
        case .userName: .userName
        case .firstName: .firstName
        case .lastName: .lastName
        case .organization: .organization
        case .department: .department
        case .application: .application
        }
    }
}

extension Parley_V1_FindUsersRequest {
    package init(_ query: UserQuery) {
        self.init()
        filters = query.filters.map { filter in
            var wire = Parley_V1_UserFilter()
            wire.field = filter.field.wire
            wire.match =
                switch filter.match {
                case .exact: .exact
                case .prefix: .prefix
                case .contains: .contains
                }
            wire.value = filter.value
            return wire
        }
        online =
            switch query.online {
            case .any: .any
            case .online: .online
            case .offline: .offline
            }
        switch query.sort {
        case .userID: sort = .userID
        case .field(let field): sort = field.wire
        }
        descending = query.descending
        limit = UInt32(clamping: query.limit)
    }

    /// The query this request asks for.
    ///
    /// - Throws: ``ParleyError`` (`invalidRequest`) for an unknown field, match, an empty value, a
    ///   value over ``UserQuery/maximumValueBytes`` bytes or more than ``UserQuery/maximumFilters`` filters.
    package func userQuery() throws(ParleyError) -> UserQuery {
        var query = UserQuery()
        guard filters.count <= UserQuery.maximumFilters else {
            throw ParleyError(code: .invalidRequest, message: "more than \(UserQuery.maximumFilters) filters")
        }
        for filter in filters {
            guard let field = UserField(wire: filter.field) else {
                throw ParleyError(code: .invalidRequest, message: "a filter names no searchable text field")
            }
            let match: UserQuery.Match
            switch filter.match {
            case .exact: match = .exact
            case .prefix: match = .prefix
            case .contains: match = .contains
            case .UNRECOGNIZED(let raw):
                throw ParleyError(code: .invalidRequest, message: "unknown match kind \(raw)")
            }
            guard !filter.value.isEmpty else {
                throw ParleyError(code: .invalidRequest, message: "a filter on \(field) has an empty value")
            }
            guard filter.value.utf8.count <= UserQuery.maximumValueBytes else {
                throw ParleyError(
                    code: .invalidRequest,
                    message: "a filter value on \(field) is longer than \(UserQuery.maximumValueBytes) bytes"
                )
            }
            query.filters.append(UserQuery.Filter(field, match, filter.value))
        }
        switch online {
        case .any: query.online = .any
        case .online: query.online = .online
        case .offline: query.online = .offline
        case .UNRECOGNIZED(let raw):
            throw ParleyError(code: .invalidRequest, message: "unknown online filter \(raw)")
        }
        switch sort {
        case .unspecified, .userID: query.sort = .userID
        case .UNRECOGNIZED(let raw):
            throw ParleyError(code: .invalidRequest, message: "unknown sort field \(raw)")
        default:
            guard let field = UserField(wire: sort) else {
                throw ParleyError(code: .invalidRequest, message: "unknown sort field")
            }
            query.sort = .field(field)
        }
        query.descending = descending
        query.limit = limit == 0 ? UserQuery.defaultLimit : Int(limit)
        return query
    }
}

extension DeliveryResult {
    package init(wire: Parley_V1_RecipientResult) {
        let status: Status
        switch wire.status {
        case .acceptedOnline: status = .acceptedOnline
        case .acceptedOffline: status = .acceptedOffline
        case .acceptedServer: status = .acceptedByServer
        case .failed, .unspecified, .UNRECOGNIZED:
            status = .failed(
                ParleyError(code: ParleyError.Code(wireValue: wire.errorCode), message: wire.errorMessage)
            )
        }
        self.init(recipient: UserID(wire.recipient), status: status, duplicate: wire.duplicate)
    }

    package var wire: Parley_V1_RecipientResult {
        var result = Parley_V1_RecipientResult()
        result.recipient = recipient.rawValue
        result.duplicate = duplicate
        switch status {
        case .acceptedOnline: result.status = .acceptedOnline
        case .acceptedOffline: result.status = .acceptedOffline
        case .acceptedByServer: result.status = .acceptedServer
        case .failed(let error):
            result.status = .failed
            result.errorCode = error.code.wireValue
            result.errorMessage = error.message
        }
        return result
    }
}
