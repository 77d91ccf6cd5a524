-- One-time review codes (tasks/io/review_codes.py): only sha256(salt + code) is stored, with
-- its item, key id, role and expiry; dates as ISO text compared bytewise as in SQLite.

CREATE TABLE review_codes (
    code_sha256 TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    role TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL,
    used_at TEXT
);

CREATE TABLE review_attempts (
    flow_run_id TEXT NOT NULL,
    attempt TEXT NOT NULL,
    item_id TEXT NOT NULL,
    result TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, attempt)
);
