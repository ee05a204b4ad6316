import Foundation
import GRDB
import ParleyCore
import ParleyServerStore
import Testing

@Suite("Held transfers (docs/PROTOCOL.md section 26)")
struct TransferStoreTests {
    private func transfer(_ id: UInt64, from sender: UserID, to recipient: UserID, size: UInt64) -> StoredTransfer {
        StoredTransfer(
            sender: sender, id: TransferID(id), recipient: recipient, name: "f\(id).bin", declaredSize: size,
            isStream: false, createdAt: Date(timeIntervalSince1970: 1_700_000_000 + Double(id)))
    }

    @Test("a transfer is recorded once, resumed by its ID, limited by size and quota, made ready, closed and taken")
    func lifecycle() throws {
        try withTemporaryStore { store, _ in
            let ids = try store.register(person("alice"), person("bob"))
            let (alice, bob) = (ids[0], ids[1])
            let first = transfer(1, from: alice, to: bob, size: 600)
            #expect(try store.startTransfer(first, maximumFileSize: 1000, quota: 1000).isNew)
            #expect(try store.startTransfer(first, maximumFileSize: 1000, quota: 1000).isNew == false)
            var other = first
            other.name = "renamed.bin"
            let reused = #expect(throws: ParleyError.self) {
                try store.startTransfer(other, maximumFileSize: 1000, quota: 1000)
            }
            #expect(reused?.code == .invalidRequest)
            let large = #expect(throws: ParleyError.self) {
                try store.startTransfer(
                    transfer(2, from: alice, to: bob, size: 1001), maximumFileSize: 1000, quota: 5000)
            }
            #expect(large?.code == .fileTooLarge)
            let over = #expect(throws: ParleyError.self) {
                try store.startTransfer(
                    transfer(3, from: alice, to: bob, size: 401), maximumFileSize: 1000, quota: 1000)
            }
            #expect(over?.code == .transferQuotaExceeded)
            let nobody = #expect(throws: ParleyError.self) {
                try store.startTransfer(
                    transfer(4, from: alice, to: 424_242, size: 1), maximumFileSize: 1000, quota: 1000)
            }
            #expect(nobody?.code == .userNotFound)
            #expect(try store.heldTransferBytes(for: bob) == 600)

            let hash = [UInt8](repeating: 7, count: 32)
            try store.markTransferReady(sender: alice, id: first.id, size: 600, sha256: hash, at: Date())
            let ready = try #require(try store.readyTransfers(for: bob).first)
            #expect(ready.phase == .ready && ready.sha256 == hash && ready.size == 600)
            #expect(try store.heldTransfers(involving: alice).map(\.id) == [first.id])

            let closed = try store.closeTransfer(
                sender: alice, id: first.id, outcome: .completed, reason: "", at: Date())
            #expect(closed?.phase == .ready)
            #expect(
                try store.closeTransfer(sender: alice, id: first.id, outcome: .cancelled, reason: "", at: Date()) == nil
            )
            #expect(try store.heldTransferBytes(for: bob) == 0)
            #expect(try store.heldTransfers(involving: nil).isEmpty)
            let told = try store.takeClosedTransfers(of: alice)
            #expect(told.map(\.outcome) == [.completed])
            #expect(try store.takeClosedTransfers(of: alice).isEmpty)
            #expect(try store.transfer(sender: alice, id: first.id) == nil)
        }
    }

    @Test("a corrupt transfer row is a storage error, not a crash")
    func corruptRow() throws {
        try withTemporaryStore { store, path in
            let ids = try store.register(person("alice"), person("bob"))
            _ = try store.startTransfer(
                transfer(9, from: ids[0], to: ids[1], size: 10), maximumFileSize: 100, quota: 100)
            try withRawDatabase(path) { db in
                try db.execute(sql: "UPDATE transfer SET phase = 9")
            }
            let error = #expect(throws: ParleyError.self) { try store.transfer(sender: ids[0], id: TransferID(9)) }
            #expect(error?.code == .storageError)
            try withRawDatabase(path) { db in
                try db.execute(sql: "UPDATE transfer SET phase = 1, size = NULL")
            }
            let missing = #expect(throws: ParleyError.self) { try store.readyTransfers(for: ids[1]) }
            #expect(missing?.code == .storageError)
        }
    }
}
