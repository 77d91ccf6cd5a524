-- The triage store (tasks/io/triage_store.py): accepted cases, their decisions of record and
-- human reviews, and the links between cases. The same columns as the SQLite file; times as
-- ISO text; `payload` holds the case sealed with the data key (ciphertext only: the case never
-- reaches the database in the clear). `accepted_seq` is an identity, so two API replicas
-- accepting at once never need a max()+1 under a lock.

CREATE TABLE triage_cases (
    case_id TEXT COLLATE "C" PRIMARY KEY,
    received_at TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    payload TEXT NOT NULL,
    decision TEXT NOT NULL,
    status TEXT NOT NULL,
    accepted_seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    bookkept BOOLEAN NOT NULL DEFAULT false,
    reviewer TEXT,
    review_reason TEXT,
    reviewed_at TEXT,
    review_bookkept BOOLEAN NOT NULL DEFAULT false,
    submitter TEXT,
    payload_sha256 TEXT NOT NULL
);
CREATE INDEX triage_cases_fingerprint ON triage_cases (fingerprint);
CREATE INDEX triage_cases_pending ON triage_cases (bookkept, accepted_seq);
CREATE INDEX triage_cases_status ON triage_cases (status, accepted_seq);
CREATE INDEX triage_cases_submitter ON triage_cases (submitter, accepted_seq);

CREATE TABLE triage_case_links (
    case_id TEXT COLLATE "C" NOT NULL,
    linked_id TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (case_id, linked_id, kind)
);
