"""The intake contract of the urgent AE triage lane: an ICSR-like report and its decision.

``POST /cases`` takes an ``IcsrCase``. Unknown fields are refused (422), so a typo cannot
silently drop a seriousness flag. Every string is bounded, every number finite, every date
plausible: what cannot be stored, hashed or put on a clock is refused at the door with the
field named, never a 500 later. Error messages never repeat the value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
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
    severity: int | None = Field(description="the highest reported grade; null when none given")
    severity_inferred: int | None = Field(
        None, description="the grade the policy used when none was reported (null: unknown)"
    )
    severity_basis: str | None = Field(
        None, description="reported, outcome:<criterion>, narrative:<criterion or cue>, ..."
    )
    medically_important: list[str] = Field(
        default_factory=list, description="medically important event ids (ime_terms.yaml)"
    )
    medically_important_uncertain: list[str] = Field(
        default_factory=list, description="events named only with an uncertain cue: held"
    )
    discounted_mentions: list[str] = Field(
        default_factory=list,
        description="<key>:<negated|historical|family|hypothetical> mentions that did not count",
    )
    follow_up_of: str | None = Field(
        None, description="a recent case of the same submitter this looks like a follow-up of"
    )
    follow_up_score: float | None = Field(
        None, description="reaction overlap (word Jaccard or MiniLM cosine) behind the link"
    )
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
