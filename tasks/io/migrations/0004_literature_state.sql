-- Literature watermarks and first-seen times (tasks/io/literature_state.py); values compare
-- bytewise (COLLATE "C") as in SQLite: ISO dates and NLM update file names sort in time order.

CREATE TABLE literature_watermarks (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, key)
);

CREATE TABLE literature_first_seen (
    item_id TEXT PRIMARY KEY,
    first_seen_at TEXT NOT NULL
);
