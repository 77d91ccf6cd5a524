-- Shared state of every host on one PostgreSQL: budgets, throttles, the paid-call journal and
-- the intake's request buckets. The same tables as the embedded SQLite files (tasks/io/budget.py,
-- call_journal.py, rate_limit.py): money in integer nano-dollars, instants in epoch seconds.

CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('grant', 'override', 'overage')),
    estimate_nusd BIGINT NOT NULL CHECK (estimate_nusd >= 0),
    actual_nusd BIGINT CHECK (actual_nusd >= 0),
    status TEXT NOT NULL CHECK (status IN ('open', 'lapsed', 'settled')),
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    settled_at DOUBLE PRECISION,
    parent TEXT,
    reasons TEXT,
    CHECK (kind != 'override' OR length(reasons) > 0),
    CHECK (status != 'settled' OR actual_nusd IS NOT NULL)
);
CREATE INDEX holds_window ON holds (workflow, period_start);
CREATE INDEX holds_open ON holds (status, expires_at);

-- One row per workflow and budget period: the row every reserve and settle of that period
-- locks (SELECT ... FOR UPDATE) before it reads the period's holds, so no two callers spend
-- the same headroom (a lock on the holds alone would not stop a concurrent insert).
CREATE TABLE budget_periods (
    workflow TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    PRIMARY KEY (workflow, period_start)
);

-- Throttle token buckets (max model calls per minute per workflow).
CREATE TABLE buckets (
    workflow TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

-- The paid-call journal: answered large-model calls by the hash of what was asked.
CREATE TABLE calls (
    call_key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    result_json TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX calls_age ON calls (created_at);

-- Request buckets of the intake API (per key, per client address) and of paced clients.
CREATE TABLE request_buckets (
    bucket TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX request_buckets_age ON request_buckets (updated_at);
