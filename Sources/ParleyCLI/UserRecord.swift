import Foundation
import ParleyCore

/// A user as `register`, `whois`, `find` and `chat` print it.
struct UserRecord: Encodable {
    var userID: UInt32
    var userName: String
    var firstName: String
    var lastName: String
    var organization: String
    var department: String
    var application: String
    var online: Bool
    var registeredAt: Date?

    init(_ info: UserInfo) {
        userID = info.userID.rawValue
        userName = info.userName
        firstName = info.firstName
        lastName = info.lastName
        organization = info.organization
        department = info.department
        application = info.application
        online = info.isOnline
        registeredAt = info.registeredAt
    }

    /// "1000 alice (Alice Smith, Acme/Lab) online"; empty details are left out.
    var line: String {
        let fullName = [firstName, lastName].filter { !$0.isEmpty }.joined(separator: " ")
        let place = [organization, department].filter { !$0.isEmpty }.joined(separator: "/")
        let details = [fullName, place].filter { !$0.isEmpty }.joined(separator: ", ")
        var text = "\(userID) \(userName)"
        if !details.isEmpty { text += " (\(details))" }
        text += online ? " online" : " offline"
        return text
    }
}
