"""Arrow schemas of every lake dataset: the contract at each boundary.

Writers cast to these schemas (a column that cannot be cast is a DataContractError), readers
get exactly these columns. The vector dimension is not here: it comes from the embedder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

# A column that writers older than it never had: the lake writes it as null when a frame lacks
# it (tasks/io/lake.py), and reading old partitions gives null too (union by name).
OPTIONAL = {b"optional": b"null when the writer predates the column"}

# When the company first retrieved the item: day 0 of the regulatory clock of a literature case.
FIRST_SEEN_AT = pa.field("first_seen_at", pa.timestamp("us", tz="UTC"), metadata=OPTIONAL)

# Parsed citations, one row per source record, before validation.
RAW_CITATION = pa.schema(
    [
        pa.field("pmid", pa.string()),
        pa.field("title", pa.string()),
        pa.field("abstract", pa.string()),
        pa.field("journal", pa.string()),
        pa.field("pub_date_raw", pa.string()),
        pa.field("mesh_terms", pa.string()),
        pa.field("chemicals", pa.string()),
        pa.field("source", pa.string()),
        pa.field("source_row", pa.int64()),
        # MEDLINE's <PMID Version="N">: a new version of a citation is a revision (re-screened)
        pa.field("pmid_version", pa.string(), metadata=OPTIONAL),
    ]
)

# Validated, deduplicated citations with the deterministic tools applied.
INTAKE = pa.schema(
    [
        *RAW_CITATION,
        pa.field("item_id", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("pub_date", pa.date32()),
        pa.field("pub_date_precision", pa.string()),
        pa.field("pub_month", pa.string()),
        pa.field("split", pa.string()),
        pa.field("label_ade", pa.bool_()),
        pa.field("products", pa.list_(pa.string())),
        pa.field("route", pa.string()),
        pa.field("route_rule", pa.string()),
    ]
)

QUARANTINE = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("source_row", pa.int64()),
        pa.field("record_key", pa.string()),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("payload", pa.string()),
        pa.field("run_id", pa.string()),
        ("quarantined_at", TS),
    ]
)

DECISION = pa.schema(
    [
        pa.field("item_id", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("workflow", pa.string()),
        pa.field("pub_date", pa.date32()),
        pa.field("pub_month", pa.string()),
        pa.field("products", pa.list_(pa.string())),
        pa.field("route", pa.string()),
        pa.field("path", pa.string()),
        pa.field("probability", pa.float64()),
        pa.field("decision", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("model", pa.string()),
        pa.field("cost_usd", pa.float64()),
        pa.field("run_id", pa.string()),
        pa.field("chunk_id", pa.string()),
        ("decided_at", TS),
        FIRST_SEEN_AT,
        # a revision (same pmid, new version or content): when it was seen, and the content
        # hash of the decision it supersedes (kept; the newest decision of an item is current)
        pa.field("revised_at", pa.timestamp("us", tz="UTC"), metadata=OPTIONAL),
        pa.field("supersedes", pa.string(), metadata=OPTIONAL),
    ]
)

# A citation NLM deleted (<DeleteCitation> of a MEDLINE update file): its decisions are withdrawn,
# never dropped; a pmid never seen here is recorded with known=false and otherwise ignored.
WITHDRAWAL = pa.schema(
    [
        pa.field("item_id", pa.string()),
        pa.field("pmid_version", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("known", pa.bool_()),
        pa.field("decisions_withdrawn", pa.int64()),
        pa.field("inbox_closed", pa.bool_()),
        pa.field("run_id", pa.string()),
        ("withdrawn_at", TS),
        pa.field("month", pa.string()),
    ]
)

ESCALATION = pa.schema(
    [
        pa.field("item_id", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("pub_date", pa.date32()),
        pa.field("pub_month", pa.string()),
        pa.field("title", pa.string()),
        pa.field("abstract", pa.string()),
        pa.field("products", pa.list_(pa.string())),
        pa.field("route", pa.string()),
        pa.field("probability", pa.float64()),
        pa.field("reason", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("chunk_id", pa.string()),
        ("escalated_at", TS),
        FIRST_SEEN_AT,
    ]
)

LEDGER = pa.schema(
    [
        pa.field("call_id", pa.string()),
        pa.field("workflow", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("chunk_id", pa.string()),
        pa.field("item_id", pa.string()),  # the item that caused the call; null: shared
        pa.field("task", pa.string()),
        pa.field("model", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("pattern", pa.string()),
        pa.field("n_items", pa.int64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("gpu_seconds", pa.float64()),
        pa.field("cost_usd", pa.float64()),
        ("created_at", TS),
        pa.field("day", pa.string()),
    ]
)

PRODUCT_DIGEST = pa.schema(
    [
        pa.field("pub_month", pa.string()),
        pa.field("pub_date", pa.date32()),
        pa.field("product", pa.string()),
        pa.field("items", pa.int64()),
        pa.field("case_candidates", pa.int64()),
        pa.field("escalated", pa.int64()),
        pa.field("closed_negative", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("top_item_ids", pa.list_(pa.string())),
        pa.field("max_probability", pa.float64()),
        ("refreshed_at", TS),
    ]
)


# Append-only audit rows of the triage lane (no narrative, no patient identifiers).
TRIAGE_AUDIT = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("case_id", pa.string()),
        pa.field("event", pa.string()),
        pa.field("status", pa.string()),
        pa.field("actor", pa.string()),
        pa.field("reasons", pa.list_(pa.string())),
        pa.field("reason_of_record", pa.string()),
        pa.field("due_date", pa.date32()),
        ("at", TS),
        pa.field("day", pa.string()),
    ]
)

TRIAGE_DECISION = pa.schema(
    [
        pa.field("case_id", pa.string()),
        pa.field("status", pa.string()),
        pa.field("lane", pa.string()),
        pa.field("valid", pa.bool_()),
        pa.field("serious", pa.bool_()),
        pa.field("seriousness", pa.list_(pa.string())),
        pa.field("severity", pa.int64()),
        pa.field("narrative_flags", pa.list_(pa.string())),
        pa.field("duplicate_of", pa.string()),
        pa.field("clock_days", pa.int64()),
        pa.field("due_date", pa.date32()),
        pa.field("requires_review", pa.bool_()),
        pa.field("reasons", pa.list_(pa.string())),
        pa.field("cost_usd", pa.float64()),
        ("decided_at", TS),
        pa.field("day", pa.string()),
    ]
)


# --- knowledge layer ---------------------------------------------------------------------------

# Materialised per-product summaries served by `ask` before any model: one row per product and
# kind ("literature": latest ADE literature; "signals": FAERS disproportionality digest).
PRODUCT_SUMMARY = pa.schema(
    [
        pa.field("product", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("text", pa.string()),
        pa.field("sources", pa.list_(pa.string())),
        pa.field("source_count", pa.int64()),
        pa.field("freshest_source", pa.string()),
        pa.field("index_version", pa.string()),
        ("refreshed_at", TS),
    ]
)

# The warm tier of the knowledge cache: one file per exact key, below its index version.
KNOWLEDGE_CACHE = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("index_version", pa.string()),
        pa.field("query_class", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("payload", pa.string()),
        pa.field("checksum", pa.string()),
        pa.field("ttl_seconds", pa.int64()),
        pa.field("cost_usd", pa.float64()),  # what building the entry cost: a hit saves this
        ("created_at", TS),
    ]
)

# One row per question answered: which tier served it, what it cost and what the cache saved.
CACHE_EVENT = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("key", pa.string()),
        pa.field("tier", pa.string()),
        pa.field("query_class", pa.string()),
        pa.field("cost_usd", pa.float64()),
        pa.field("cost_saved_usd", pa.float64()),
        ("created_at", TS),
        pa.field("day", pa.string()),
    ]
)


# one row per answer `ask` served: the grounded-answer rate (tasks/core/answer_quality.py)
ANSWER_GROUNDING = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("tier", pa.string()),  # summary | cache | retrieval | composed
        pa.field("served_by", pa.string()),  # hot | warm | summary | semantic | miss
        pa.field("model", pa.string()),  # the composer: extractive, model:<key>, summary:<kind>
        pa.field("grounded_share", pa.float64()),  # null: never checked
        pa.field("fully_grounded", pa.bool_()),
        pa.field("refusal", pa.bool_()),
        pa.field("query_class", pa.string()),
        ("created_at", TS),
        pa.field("day", pa.string()),
    ]
)


# --- model ladder ------------------------------------------------------------------------------

# Case candidates from the escalation lane: a large model's positive verdict, for a PV reviewer.
CASE = pa.schema(
    [
        pa.field("item_id", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("workflow", pa.string()),
        pa.field("pub_month", pa.string()),
        pa.field("products", pa.list_(pa.string())),
        pa.field("suspect_drugs", pa.list_(pa.string())),
        pa.field("reactions", pa.list_(pa.string())),
        pa.field("seriousness", pa.list_(pa.string())),
        pa.field("product_among_suspects", pa.bool_()),
        pa.field("summary", pa.string()),
        pa.field("model", pa.string()),
        pa.field("run_id", pa.string()),
        ("created_at", TS),
    ]
)

# The large model's verdicts on the evaluation sample, kept so a re-run never pays twice.
EVAL_VERDICT = pa.schema(
    [
        pa.field("item_id", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("model", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("large_says", pa.bool_()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("calls", pa.int64()),
        ("created_at", TS),
    ]
)

# Heads of the audit trail recorded beside the decisions they cover (append-only, one row per
# distinct head): `pharmalane audit verify` checks the trail still holds every one of them.
AUDIT_ANCHOR = pa.schema(
    [
        pa.field("anchor_id", pa.string()),
        pa.field("seq", pa.int64()),
        pa.field("hash", pa.string()),
        pa.field("workflow", pa.string()),
        pa.field("run_id", pa.string()),
        ("anchored_at", TS),
        pa.field("day", pa.string()),
    ]
)

# One row per item the persona panel pre-validated before it reached the review inbox: what it
# did to the item (close | lower | human_first | keep), why, and what its calls cost. FinOps
# reads it for the panel's cost per item and its effect on inbox volume.
PANEL_REVIEW = pa.schema(
    [
        pa.field("item_id", pa.string()),  # the inbox item id (<kind>:<source id>)
        pa.field("source_id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("action", pa.string()),
        pa.field("reason_codes", pa.list_(pa.string())),
        pa.field("personas", pa.int64()),
        pa.field("personas_answered", pa.int64()),
        pa.field("priority_before", pa.int64()),
        pa.field("priority_after", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("run_id", pa.string()),
        ("reviewed_at", TS),
        pa.field("day", pa.string()),
    ]
)

# One row per periodic-summary draft (flow draft-periodic-summary): product, month and version
# (a hash of its evidence and composer), the grounding check's result and what the draft cost.
# Keyed by draft_id = <product>:<period>:<version>: a re-run with the same evidence adds nothing.
PERIODIC_DRAFT = pa.schema(
    [
        pa.field("draft_id", pa.string()),
        pa.field("product", pa.string()),
        pa.field("period", pa.string()),  # YYYY-MM (the partition)
        pa.field("version", pa.string()),
        pa.field("composer", pa.string()),  # model | template
        pa.field("model", pa.string()),
        pa.field("note", pa.string()),
        pa.field("markdown", pa.string()),
        pa.field("evidence_ids", pa.list_(pa.string())),
        pa.field("evidence_sources", pa.list_(pa.string())),
        pa.field("sentences", pa.int64()),
        pa.field("removed_sentences", pa.int64()),
        pa.field("grounded_share", pa.float64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("latency_s", pa.float64()),
        pa.field("run_id", pa.string()),
        ("created_at", TS),
    ]
)

# --- review inbox ------------------------------------------------------------------------------

INBOX_KINDS = ("literature", "triage", "draft")
# a resolution is an outcome: what a reviewer's accept / reject means for each kind of item;
# a periodic-summary draft may also be sent back for changes
OUTCOMES = {
    "literature": {"accept": "confirmed_icsr", "reject": "not_icsr"},
    "triage": {"accept": "accepted", "reject": "rejected"},
    "draft": {"accept": "accepted", "changes": "needs_changes", "reject": "rejected"},
}


@dataclass(frozen=True)
class InboxItem:
    """One thing a human must decide, with its clock (the inbox's row, evidence opened).

    ``item_id`` is ``<kind>:<source_id>`` (the lake's item id or the triage case id), so ids of
    two kinds never collide. ``evidence`` is a JSON-able mapping, sealed at rest.
    """

    item_id: str
    kind: str
    source_id: str
    source: str  # the workflow that put it here
    reason: str  # case_candidate | human_review | held_for_review
    day_zero: date
    clock_days: int
    due_date: date
    priority: int  # 1 most urgent
    evidence: dict[str, Any]
    status: str = "open"  # open | resolved
    outcome: str | None = None
    reviewer: str | None = None
    reason_sha256: str | None = None
    resolved_at: datetime | None = None
