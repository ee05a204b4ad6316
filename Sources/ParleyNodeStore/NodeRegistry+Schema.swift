import GRDB
import ParleySQLite

extension NodeRegistry {
    /// The registry's schema history. Migrations are append-only: never edit or reorder a
    /// registered one, register a new one ("v2-…") instead.
    ///
    /// Dates are INTEGER milliseconds since 1970, user IDs INTEGER (0...UInt32.max), message IDs
    /// the INTEGER bit pattern of their UInt64, fact sources their ``FactSource`` raw value. Text
    /// fields are stored as given plus a case-folded copy (`…_folded`) that every search compares
    /// against, as in the server's directory.
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()

        // `source` is where the last update came from; `server_vouched` tells whether the stored
        // names and node ID came from the server, which only another server fact may replace.
        migrator.registerMigration("v1-cached-users") { db in
            try db.execute(
                sql: """
                    CREATE TABLE cached_user (
                        user_id INTEGER PRIMARY KEY NOT NULL,
                        user_name TEXT NOT NULL,
                        first_name TEXT NOT NULL,
                        last_name TEXT NOT NULL,
                        organization TEXT NOT NULL,
                        department TEXT NOT NULL,
                        application TEXT NOT NULL,
                        user_name_folded TEXT NOT NULL,
                        first_name_folded TEXT NOT NULL,
                        last_name_folded TEXT NOT NULL,
                        organization_folded TEXT NOT NULL,
                        department_folded TEXT NOT NULL,
                        application_folded TEXT NOT NULL,
                        registered_at INTEGER,
                        node_id TEXT,
                        source TEXT NOT NULL,
                        server_vouched INTEGER NOT NULL,
                        last_seen INTEGER NOT NULL
                    );
                    CREATE INDEX cached_user_by_user_name_folded ON cached_user (user_name_folded);
                    """
            )
        }

        // `addresses` is a JSON array of "host:port" strings. `vouched_key` holds, per user, the
        // node and key the server vouched for at that user's last logon.
        migrator.registerMigration("v1-cached-nodes") { db in
            try db.execute(
                sql: """
                    CREATE TABLE cached_node (
                        node_id TEXT PRIMARY KEY NOT NULL,
                        public_key BLOB NOT NULL,
                        user_id INTEGER,
                        user_name TEXT,
                        addresses TEXT NOT NULL,
                        source TEXT NOT NULL,
                        server_vouched INTEGER NOT NULL,
                        last_seen INTEGER NOT NULL
                    );
                    CREATE INDEX cached_node_by_user_id ON cached_node (user_id);
                    CREATE TABLE vouched_key (
                        user_id INTEGER PRIMARY KEY NOT NULL,
                        node_id TEXT NOT NULL,
                        public_key BLOB NOT NULL,
                        vouched_at INTEGER NOT NULL
                    );
                    """
            )
        }

        // One pinned key per subject: "node:<node ID>" or "user:<user ID>". `replaced_key` and
        // `replaced_at` keep the last key a server-vouched key replaced, for the record.
        migrator.registerMigration("v1-pinned-keys") { db in
            try db.execute(
                sql: """
                    CREATE TABLE pinned_key (
                        subject TEXT PRIMARY KEY NOT NULL,
                        node_id TEXT NOT NULL,
                        public_key BLOB NOT NULL,
                        pinned_at INTEGER NOT NULL,
                        vouched_by_server INTEGER NOT NULL,
                        replaced_key BLOB,
                        replaced_at INTEGER
                    );
                    """
            )
        }

        // An outbox message's body is stored once; each recipient still to reach has an
        // `outbox_recipient` row. The AUTOINCREMENT sequence orders the outbox and is never
        // reused. `outbox_delivered` remembers each (sender, message ID, recipient) delivered, so
        // enqueuing a delivered message again is recognized as a duplicate until it is pruned.
        migrator.registerMigration("v1-outbox") { db in
            try db.execute(
                sql: """
                    CREATE TABLE outbox_message (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        sender INTEGER NOT NULL,
                        message_id INTEGER NOT NULL,
                        recipients BLOB NOT NULL,
                        is_text INTEGER NOT NULL,
                        body BLOB NOT NULL,
                        created_at INTEGER NOT NULL
                    );
                    CREATE UNIQUE INDEX outbox_message_by_sender_message_id ON outbox_message (sender, message_id);
                    CREATE TABLE outbox_recipient (
                        recipient INTEGER NOT NULL,
                        sequence INTEGER NOT NULL REFERENCES outbox_message (sequence) ON DELETE CASCADE,
                        PRIMARY KEY (recipient, sequence)
                    ) WITHOUT ROWID;
                    CREATE INDEX outbox_recipient_by_sequence ON outbox_recipient (sequence);
                    CREATE TABLE outbox_delivered (
                        sender INTEGER NOT NULL,
                        message_id INTEGER NOT NULL,
                        recipient INTEGER NOT NULL,
                        route TEXT NOT NULL,
                        delivered_at INTEGER NOT NULL,
                        PRIMARY KEY (sender, message_id, recipient)
                    ) WITHOUT ROWID;
                    CREATE INDEX outbox_delivered_by_time ON outbox_delivered (delivered_at);
                    """
            )
        }

        // Node links (NodeRegistry+Seen.swift): `seen_message` remembers each message delivered to
        // this node's application, keyed by sender ("user:<ID>" or "node:<node ID>"), so a copy
        // arriving on another path is dropped. `node_outbox` is the durable outbox for messages
        // addressed to a node rather than a user (peer-to-peer mode), ordered by `sequence`.
        migrator.registerMigration("v2-node-links") { db in
            try db.execute(
                sql: """
                    CREATE TABLE seen_message (
                        sender TEXT NOT NULL,
                        message_id INTEGER NOT NULL,
                        seen_at INTEGER NOT NULL,
                        PRIMARY KEY (sender, message_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX seen_message_by_time ON seen_message (seen_at);
                    CREATE TABLE node_outbox (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        node_id TEXT NOT NULL,
                        message_id INTEGER NOT NULL,
                        sender INTEGER NOT NULL,
                        is_text INTEGER NOT NULL,
                        body BLOB NOT NULL,
                        created_at INTEGER NOT NULL
                    );
                    CREATE UNIQUE INDEX node_outbox_by_node_message ON node_outbox (node_id, message_id);
                    """
            )
        }

        // Order across routes (NodeRegistry+Receipts.swift): `awaiting_receipt` keeps a copy of
        // each message sent through the server until the recipient's delivery receipt arrives,
        // so a later direct message cannot overtake it (the copy goes direct first).
        migrator.registerMigration("v3-awaiting-receipt") { db in
            try db.execute(
                sql: """
                    CREATE TABLE awaiting_receipt (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        recipient INTEGER NOT NULL,
                        message_id INTEGER NOT NULL,
                        sender INTEGER NOT NULL,
                        is_text INTEGER NOT NULL,
                        body BLOB NOT NULL,
                        created_at INTEGER NOT NULL
                    );
                    CREATE UNIQUE INDEX awaiting_receipt_by_recipient_message
                        ON awaiting_receipt (recipient, message_id);
                    CREATE INDEX awaiting_receipt_by_time ON awaiting_receipt (created_at);
                    """
            )
        }

        // Exactly once to the application (NodeRegistry+Inbox.swift): `node_inbox` holds each
        // message recorded as seen but not yet confirmed by the application, in arrival order;
        // the row and its `seen_message` row are written in one transaction before the message
        // is acknowledged, and the row is deleted once the application has taken the message.
        // `sender` is the seen key ("user:<ID>" or "node:<node ID>"), `sender_user` the message's
        // sender user ID, `from_node` the peer node it came from (NULL through the server),
        // `route` the node's Route raw value.
        migrator.registerMigration("v4-node-inbox") { db in
            try db.execute(
                sql: """
                    CREATE TABLE node_inbox (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        sender TEXT NOT NULL,
                        message_id INTEGER NOT NULL,
                        sender_user INTEGER NOT NULL,
                        recipients BLOB NOT NULL,
                        is_text INTEGER NOT NULL,
                        body BLOB NOT NULL,
                        sent_at INTEGER NOT NULL,
                        delivered_at INTEGER NOT NULL,
                        from_node TEXT,
                        route TEXT NOT NULL
                    );
                    """
            )
        }

        // The user's contact list as the server last gave it (JSON of ParleyCore.Contact, one
        // row per contact), so that a node shows its contacts while the server is unreachable.
        migrator.registerMigration("v5-node-contacts") { db in
            try db.execute(
                sql: """
                    CREATE TABLE cached_contact (
                        user_id INTEGER PRIMARY KEY,
                        contact BLOB NOT NULL,
                        cached_at INTEGER NOT NULL
                    );
                    """
            )
        }

        // Message history (NodeRegistry+History.swift): what this node sent and received on
        // every route, with the route, and its full-text index; the same table as the server's
        // history file (HistoryTable).
        migrator.registerMigration("v6-node-history") { db in try HistoryTable.create(db) }
        // v7 is the node's file transfers (another branch).
        migrator.registerMigration("v8-node-history-batched-fts") { db in try HistoryTable.dropInsertTrigger(db) }

        return migrator
    }()
}
