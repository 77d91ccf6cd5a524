"""Arrow schemas of every lake dataset: the contract at each boundary.

Writers cast to these schemas (a column that cannot be cast is a DataContractError), readers
get exactly these columns. The vector dimension is not here: it comes from the embedder.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

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
    ]
)

LEDGER = pa.schema(
    [
        pa.field("call_id", pa.string()),
        pa.field("workflow", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("chunk_id", pa.string()),
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


# --- urgent AE triage (issue 4) ---------------------------------------------------------------
# The intake contract of POST /cases: an ICSR-like report. Unknown fields are refused (422), so
# a typo cannot silently drop a seriousness flag. Every string is bounded, every number finite,
# every date plausible: what cannot be stored, hashed or put on a clock is refused at the door
# with the field named, never a 500 later. Error messages never repeat the value.

from datetime import UTC, date, datetime, timedelta  # noqa: E402
from typing import Annotated, Any, Literal  # noqa: E402

from pydantic import (  # noqa: E402
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

EARLIEST_RECEIPT = datetime(1990, 1, 1, tzinfo=UTC)
RECEIPT_FUTURE_SLACK = timedelta(days=1)  # a sender's clock may run a little ahead
CASE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"  # starts alphanumeric: no '.', '..'


# pydantic already refuses an unpaired surrogate (string_unicode) and jiter an escaped one
ShortText = Annotated[str, StringConstraints(max_length=200)]


def plausible_receipt(value: datetime, now: datetime) -> datetime:
    """``value`` if it lies between 1990-01-01 and ``now`` + 1 day, else ValueError.

    A receipt date is day 0 of a legal clock: year 0001 or 9999 overflows the date arithmetic
    (a 500 before) and 1900 or 2099 gives an absurd due date.
    """
    try:
        plausible = EARLIEST_RECEIPT <= value <= now + RECEIPT_FUTURE_SLACK
    except OverflowError:
        plausible = False
    if not plausible:
        raise ValueError("must lie between 1990-01-01 and one day from now (UTC)")
    return value


class _Intake(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )


class Reporter(_Intake):
    qualification: Literal["physician", "pharmacist", "other_hcp", "consumer", "lawyer", "other"]
    country: str | None = Field(None, pattern=r"^[A-Z]{2,3}$")


class Patient(_Intake):
    initials: str | None = Field(None, max_length=10)
    age_years: float | None = Field(None, ge=0, le=130)
    sex: Literal["F", "M", "U"] | None = None


class Reaction(_Intake):
    term: ShortText = Field(min_length=1, description="reported or MedDRA PT")
    severity_grade: int | None = Field(None, ge=1, le=5, description="CTCAE-like grade 1-5")


class Outcome(_Intake):
    """ICH E2A seriousness criteria as reported in structured fields.

    A flag the report leaves out is None: *unknown*, not "no". Only an explicit ``false`` says a
    criterion is not met; unknown criteria must be ruled out by the narrative analysis before a
    report may be auto-accepted.
    """

    death: bool | None = None
    life_threatening: bool | None = None
    hospitalisation: bool | None = None
    disability: bool | None = None
    congenital_anomaly: bool | None = None
    medically_important: bool | None = None


class IcsrCase(_Intake):
    case_id: str = Field(
        pattern=CASE_ID_PATTERN,
        description="the submitter's id: 1-64 of A-Z a-z 0-9 . _ : -, starting alphanumeric",
    )
    received_at: AwareDatetime = Field(
        description="when the company first received it (day 0); 1990-01-01 to now + 1 day"
    )
    reporter: Reporter | None = None
    patient: Patient = Patient()
    suspect_drugs: list[ShortText] = Field(default_factory=list, max_length=20)
    reactions: list[Reaction] = Field(default_factory=list, max_length=50)
    outcome: Outcome = Outcome()
    study_case: bool = Field(False, description="from a clinical trial (7-day clock may apply)")
    expected: bool | None = Field(None, description="listed in the reference safety information")
    narrative: str = Field("", max_length=20_000)

    @field_validator("case_id", mode="before")
    @classmethod
    def _no_stray_whitespace(cls, value: Any) -> Any:
        # before stripping: " C-1" and "C-1" must not silently become the same case
        if isinstance(value, str) and value != value.strip():
            raise ValueError("case_id has leading or trailing whitespace")
        return value

    @field_validator("received_at")
    @classmethod
    def _plausible_receipt(cls, value: datetime, info: ValidationInfo) -> datetime:
        # the caller may pass its clock as validation context {"now": datetime}
        now = (info.context or {}).get("now") or datetime.now(UTC)
        return plausible_receipt(value, now)


TriageStatus = Literal["auto_accepted", "held_for_review", "deferred", "accepted", "rejected"]


class TriageDecision(BaseModel):
    """What POST /cases answers; stored durably before the answer is sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_id: str
    status: TriageStatus
    lane: Literal["hot", "deferred"]
    valid: bool
    missing: list[str]
    seriousness: list[str] = Field(description="criteria met by the structured fields")
    serious: bool | None = Field(
        description="true: a criterion is met; false: non-seriousness established; null: neither"
    )
    possible_seriousness: list[str] = Field(
        default_factory=list,
        description="criteria not ruled out (the clock assumes them); empty when established",
    )
    severity: int | None
    narrative_flags: list[str]
    narrative_score: float | None
    duplicate_of: str | None
    clock_days: int
    day_zero: date
    due_date: date
    requires_review: bool
    reasons: list[str]
    model: str | None
    input_tokens: int
    cost_usd: float
    decided_at: datetime


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


# --- knowledge layer (issue 5) ----------------------------------------------------------------

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


# --- model ladder (issue 3) ------------------------------------------------------------------

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
