package import GRDB
package import ParleyCore

/// The SQL of a structured directory search, shared by the server's directory and the node's
/// user cache (both tables have the same folded text columns and a `user_id`). Columns come
/// from a closed set; user text only ever travels as a bound argument.
package struct UserSearchSQL {
    package let sql: String
    package let arguments: StatementArguments

    /// - Parameters:
    ///   - columns: the SELECT list.
    ///   - table: the table with `user_id` and the `*_folded` columns.
    package init(_ query: UserQuery, onlineUserIDs: Set<UserID>, columns: String, table: String) {
        var conditions: [String] = []
        var arguments = StatementArguments()
        for filter in query.filters {
            let column = Self.foldedColumn(filter.field)
            let value = filter.value.folded
            switch filter.match {
            case .exact:
                conditions.append("\(column) = ?")
                arguments += [value]
            case .prefix:
                conditions.append("\(column) LIKE ? ESCAPE '\\'")
                arguments += [value.escapedForLike + "%"]
            case .contains:
                conditions.append("\(column) LIKE ? ESCAPE '\\'")
                arguments += ["%" + value.escapedForLike + "%"]
            }
        }
        switch query.online {
        case .any:
            break
        case .online:
            conditions.append("user_id IN (SELECT value FROM json_each(?))")
            arguments += [onlineUserIDs.jsonArray]
        case .offline:
            if !onlineUserIDs.isEmpty {
                conditions.append("user_id NOT IN (SELECT value FROM json_each(?))")
                arguments += [onlineUserIDs.jsonArray]
            }
        }
        let direction = query.descending ? "DESC" : "ASC"
        let order =
            switch query.sort {
            case .userID: "user_id \(direction)"
            case .field(let field): "\(Self.foldedColumn(field)) \(direction), user_id \(direction)"
            }
        var sql = "SELECT \(columns) FROM \(table)"
        if !conditions.isEmpty {
            sql += " WHERE " + conditions.joined(separator: " AND ")
        }
        // One more than the limit, to tell whether the answer is truncated.
        sql += " ORDER BY \(order) LIMIT ?"
        arguments += [query.effectiveLimit + 1]
        self.sql = sql
        self.arguments = arguments
    }

    package static func foldedColumn(_ field: UserField) -> String {
        switch field {
        case .userName: "user_name_folded"
        case .firstName: "first_name_folded"
        case .lastName: "last_name_folded"
        case .organization: "organization_folded"
        case .department: "department_folded"
        case .application: "application_folded"
        }
    }
}
