-- The review inbox (tasks/io/inbox.py): the same columns as the SQLite file, dates as ISO text
-- compared bytewise (COLLATE "C") so listings sort exactly as they do there; evidence sealed.

CREATE TABLE items (
    item_id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL,
    source_id TEXT COLLATE "C" NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    day_zero TEXT NOT NULL,
    clock_days INTEGER NOT NULL,
    due_date TEXT COLLATE "C" NOT NULL,
    priority INTEGER NOT NULL,
    evidence BYTEA NOT NULL,
    added_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    outcome TEXT,
    reviewer TEXT,
    reason_sha256 TEXT,
    resolved_at TEXT
);
CREATE INDEX items_open ON items (status, due_date, priority);
CREATE INDEX items_source ON items (source_id);

CREATE TABLE review_runs (
    item_id TEXT COLLATE "C" PRIMARY KEY,
    flow_run_id TEXT NOT NULL,
    started_at TEXT NOT NULL
);
