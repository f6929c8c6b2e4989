-- The store kernel's tables (the same shapes as the SQLite backend's schema version 2).
--
-- Names (kind, key, term) are bytea holding their UTF-8 bytes: compared byte by byte, which is
-- code point order (the order SQLite and Python use), with no collation and no limit on which
-- characters a name holds. A name may be 4096 characters (16 KiB of UTF-8), more than a btree
-- entry can hold (about 2.7 KB), so identity is the SHA-256 of each name and ordered scans use a
-- 512-byte prefix of the key followed by the whole key.

CREATE TABLE records (
    kind bytea NOT NULL,
    key bytea NOT NULL,
    value text NOT NULL,          -- compact JSON object
    expires_at bigint             -- epoch seconds; NULL lives until deleted
);
CREATE UNIQUE INDEX records_identity ON records (sha256(kind), sha256(key));
CREATE INDEX records_order ON records (sha256(kind), substring(key FROM 1 FOR 512));
CREATE INDEX records_by_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE record_terms (
    kind bytea NOT NULL,
    term bytea NOT NULL,
    key bytea NOT NULL
);
CREATE UNIQUE INDEX record_terms_identity ON record_terms (sha256(kind), sha256(term), sha256(key));
CREATE INDEX record_terms_by_key ON record_terms (sha256(kind), sha256(key));

CREATE TABLE counters (
    kind bytea NOT NULL,
    key bytea NOT NULL,
    count bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE UNIQUE INDEX counters_identity ON counters (sha256(kind), sha256(key));
CREATE INDEX counters_by_expiry ON counters (expires_at);

-- The hash-chained audit log (broker.store.audit) and its append cursor. The head row exists
-- from the start so that every appender can lock it (SELECT ... FOR UPDATE): appends from any
-- number of processes then form one gap-free chain.
CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    at bigint NOT NULL,
    event text NOT NULL,          -- canonical JSON of the event
    prev_hash text NOT NULL,
    hash text NOT NULL
);
CREATE TABLE audit_head (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, repeat('0', 64));
