import GRDB
import ParleySQLite

extension ServerStore {
    /// The schema's history. Migrations are append-only: never edit or reorder a registered one,
    /// register a new one ("v2-…") instead.
    ///
    /// Dates are INTEGER milliseconds since 1970. User IDs are INTEGER (0...UInt32.max); message
    /// IDs are the INTEGER bit pattern of their UInt64. Text fields are stored as given, plus a
    /// case-folded copy (`…_folded`) that every search compares against.
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()

        migrator.registerMigration("v1-users") { db in
            try db.execute(
                sql: """
                    CREATE TABLE user (
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
                        password_hash TEXT NOT NULL,
                        registered_at INTEGER NOT NULL
                    );
                    CREATE INDEX user_by_user_name_folded ON user (user_name_folded);
                    """
            )
        }

        // A message's body is stored once in `message`; each recipient gets a `delivery` row.
        // `message.pending_count` counts the deliveries not yet acknowledged: when it reaches 0 the
        // message row (and its body) is deleted, while the small delivery rows stay behind as
        // acknowledged tombstones until the de-duplication window has passed. Deliveries do not
        // reference `message` with a foreign key: the store manages that lifetime itself, and a
        // foreign key would need one more index on every delivery.
        migrator.registerMigration("v1-messages") { db in
            try db.execute(
                sql: """
                    CREATE TABLE message (
                        id INTEGER PRIMARY KEY NOT NULL,
                        sender INTEGER NOT NULL,
                        message_id INTEGER NOT NULL,
                        recipients BLOB NOT NULL,
                        is_text INTEGER NOT NULL,
                        body BLOB NOT NULL,
                        sent_at INTEGER NOT NULL,
                        stored_at INTEGER NOT NULL,
                        wants_receipt INTEGER NOT NULL,
                        pending_count INTEGER NOT NULL
                    );
                    CREATE TABLE delivery (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        recipient INTEGER NOT NULL REFERENCES user (user_id),
                        sender INTEGER NOT NULL,
                        message_id INTEGER NOT NULL,
                        message INTEGER,
                        acknowledged_at INTEGER
                    );
                    CREATE UNIQUE INDEX delivery_by_recipient_sender_message_id
                        ON delivery (recipient, sender, message_id);
                    CREATE INDEX delivery_pending_by_recipient_sequence
                        ON delivery (recipient, sequence) WHERE acknowledged_at IS NULL;
                    CREATE INDEX delivery_acknowledged_by_time
                        ON delivery (acknowledged_at) WHERE acknowledged_at IS NOT NULL;
                    """
            )
        }

        // The node each user declared at its last logon with a node key (docs/PROTOCOL.md,
        // "Node keys"): all NULL (and allow_direct 0) until then. direct_addresses is a JSON array
        // of strings.
        migrator.registerMigration("v2-node-keys") { db in
            try db.execute(
                sql: """
                    ALTER TABLE user ADD COLUMN node_id TEXT;
                    ALTER TABLE user ADD COLUMN node_public_key BLOB;
                    ALTER TABLE user ADD COLUMN direct_addresses TEXT;
                    ALTER TABLE user ADD COLUMN allow_direct INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE user ADD COLUMN node_key_updated_at INTEGER;
                    """
            )
        }

        // Resumption tokens (docs/PROTOCOL.md section 9.2.1): only the SHA-256 of each token is
        // stored, so a copy of the database does not let anyone log on. Each row is redeemed
        // once (deleted), revoked with its user's other tokens, or pruned after expires_at.
        migrator.registerMigration("v3-resumption-tokens") { db in
            try db.execute(
                sql: """
                    CREATE TABLE resumption_token (
                        token_hash BLOB PRIMARY KEY NOT NULL,
                        user_id INTEGER NOT NULL REFERENCES user (user_id),
                        expires_at INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX resumption_token_by_user ON resumption_token (user_id);
                    CREATE INDEX resumption_token_by_expiry ON resumption_token (expires_at);
                    """
            )
        }

        // Contact lists (docs/PROTOCOL.md, "Contacts and presence"): one row per (owner,
        // contact); `display_rule` is ContactDisplayName.wireValue and `custom_name` is only used
        // by rule 4. The second index finds a user's watchers (whose lists hold it) for presence
        // fan-out. The presence a user chose (shown while it is online, kept across logons) and
        // its last logon and logoff times live on the user row.
        migrator.registerMigration("v4-contacts-presence") { db in
            try db.execute(
                sql: """
                    CREATE TABLE contact (
                        owner INTEGER NOT NULL REFERENCES user (user_id),
                        contact INTEGER NOT NULL REFERENCES user (user_id),
                        display_rule INTEGER NOT NULL,
                        custom_name TEXT NOT NULL,
                        added_at INTEGER NOT NULL,
                        PRIMARY KEY (owner, contact)
                    ) WITHOUT ROWID;
                    CREATE INDEX contact_by_contact ON contact (contact, owner);
                    ALTER TABLE user ADD COLUMN presence_state INTEGER NOT NULL DEFAULT 1;
                    ALTER TABLE user ADD COLUMN presence_text TEXT NOT NULL DEFAULT '';
                    ALTER TABLE user ADD COLUMN last_logon_at INTEGER;
                    ALTER TABLE user ADD COLUMN last_logoff_at INTEGER;
                    """
            )
        }

        // User IDs the admin reserved (docs/ADMIN.md): REGISTER cannot take them, and new IDs are
        // assigned above them.
        migrator.registerMigration("v5-reserved-user-ids") { db in
            try db.execute(
                sql: """
                    CREATE TABLE reserved_user_id (
                        user_id INTEGER PRIMARY KEY NOT NULL,
                        reserved_at INTEGER NOT NULL
                    );
                    """
            )
        }

        // Fire-and-forget commands kept for an offline recipient (docs/PROTOCOL.md section 24.5):
        // pushed in `id` order at its next logon and deleted as they are taken.
        migrator.registerMigration("v6-stored-commands") { db in
            try db.execute(
                sql: """
                    CREATE TABLE stored_command (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        recipient INTEGER NOT NULL REFERENCES user (user_id),
                        sender INTEGER NOT NULL,
                        name TEXT NOT NULL,
                        payload BLOB NOT NULL,
                        stored_at INTEGER NOT NULL
                    );
                    CREATE INDEX stored_command_by_recipient ON stored_command (recipient, id);
                    """
            )
        }

        // File and stream transfers (docs/PROTOCOL.md section 26); the bytes live in spool files in
        // the data directory's `transfers` folder. phase: 0 uploading, 1 ready (size and sha256
        // set), 2 closed (outcome set; kept until the sender is told). No foreign keys: deleting a
        // user deletes its transfers and their spool files together.
        migrator.registerMigration("v8-transfers") { db in
            try db.execute(
                sql: """
                    CREATE TABLE transfer (
                        sender INTEGER NOT NULL,
                        transfer_id INTEGER NOT NULL,
                        recipient INTEGER NOT NULL,
                        name TEXT NOT NULL,
                        declared_size INTEGER NOT NULL,
                        is_stream INTEGER NOT NULL,
                        size INTEGER,
                        sha256 BLOB,
                        phase INTEGER NOT NULL,
                        outcome INTEGER NOT NULL,
                        reason TEXT NOT NULL,
                        created_at INTEGER NOT NULL,
                        ready_at INTEGER,
                        closed_at INTEGER,
                        PRIMARY KEY (sender, transfer_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX transfer_by_recipient ON transfer (recipient, phase);
                    """
            )
        }

        return migrator
    }()
}
