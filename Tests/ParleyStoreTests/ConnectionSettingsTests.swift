import GRDB
import ParleyCore
import Testing

@testable import ParleyServerStore

@Suite struct ConnectionSettingsTests {
    @Test(arguments: [(ServerStore.Configuration.Durability.normal, 1), (.full, 2)])
    func appliesTheConnectionSettings(durability: ServerStore.Configuration.Durability, synchronous: Int) throws {
        try withTemporaryStore(configuration: .init(durability: durability)) { store, _ in
            let pragmas = "SELECT * FROM pragma_synchronous, pragma_foreign_keys, pragma_busy_timeout"
            let fromWriter = try store.database.pool.write { db in try Row.fetchOne(db, sql: pragmas) }
            let fromReader = try store.database.pool.read { db in try Row.fetchOne(db, sql: pragmas) }
            for row in [fromWriter, fromReader] {
                let values = try #require(row)
                #expect(values[0] as Int? == synchronous)
                #expect(values[1] as Int? == 1)
            }
            // Readers keep GRDB's own, longer timeout: in WAL mode they wait only in rare cases.
            #expect(fromWriter?[2] as Int? == 5000)
            #expect((fromReader?[2] as Int?) ?? 0 > 0)
        }
    }
}
