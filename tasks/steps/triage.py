"""The triage hot path: deterministic tools, the small narrative model, the supervisor.

Runs inline in the intake service (no Prefect run per case). The decision is stored durably
before it is returned; the Prefect lane (``flows/urgent_ae_triage.py``) books it later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from models.narrative import NarrativeFlagger, NarrativeVerdict
from tasks.core.pricing import call_cost
from tasks.io.triage_store import TriageStore
from tasks.policy.engine import decide
from tasks.schemas import IcsrCase, TriageDecision
from tasks.settings import ModelPrice, PolicyRule, Settings, load_models, load_policies
from tasks.steps import resources
from tasks.tools import icsr

WORKFLOW = "urgent-ae-triage"
NARRATIVE_TASK = "triage-narrative"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Triager:
    """Decides one case at a time; thread-safe; the narrative model is shared and bounded."""

    def __init__(
        self,
        settings: Settings,
        store: TriageStore,
        flagger: NarrativeFlagger,
        *,
        rules: Sequence[PolicyRule],
        price: ModelPrice,
        model_key: str,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.settings, self.store, self.flagger = settings, store, flagger
        self.rules, self.price, self.model_key, self.clock = rules, price, model_key, clock
        self.slots = threading.BoundedSemaphore(settings.triage.max_in_flight)

    @classmethod
    def build(cls, settings: Settings, store: TriageStore | None = None) -> Triager:
        catalog = load_models(settings)
        model_key = catalog.tasks[NARRATIVE_TASK]
        return cls(
            settings,
            store or resources.triage_store(settings),
            NarrativeFlagger(resources.embedder(), settings.triage.narrative_threshold),
            rules=load_policies(settings).rules,
            price=catalog.models[model_key],
            model_key=model_key,
        )

    def triage(self, case: IcsrCase) -> tuple[TriageDecision, bool]:
        """The decision of record for ``case`` and whether this call made it.

        A known case id returns its first decision and costs nothing. Cases with a structured
        seriousness criterion always get the narrative model (they wait for a slot); others,
        when every slot is busy, are deferred to the batch lane: stored, never dropped.
        """
        known = self.store.decision(case.case_id)
        if known is not None:
            return known, False
        decision, fingerprint = self._decide(case, may_defer=True)
        return self.store.accept(case, fingerprint, decision)

    def settle_deferred(self, limit: int) -> list[TriageDecision]:
        """The batch lane's half of a deferral: read the narrative, decide again, store it.

        Only cases still ``deferred`` change; the new decision is booked by the lane beside the
        deferred one, so the lake keeps both.
        """
        settled = []
        for stored in self.store.deferred(limit):
            decision, _ = self._decide(stored.case, may_defer=False)
            if self.store.settle(decision):
                settled.append(decision)
        return settled

    def _decide(self, case: IcsrCase, *, may_defer: bool) -> tuple[TriageDecision, str]:
        missing = icsr.missing_minimum_criteria(case)
        criteria = icsr.seriousness(case.outcome)
        grade = icsr.severity(case)
        clock = icsr.regulatory_clock(
            case.received_at,
            site_timezone=self.settings.triage.site_timezone,
            criteria=criteria,
            study_case=case.study_case,
            expected=case.expected,
        )
        fingerprint = icsr.duplicate_fingerprint(case)
        duplicate_of = icsr.find_duplicate(
            case,
            fingerprint,
            self.store.recent(fingerprint),
            window_days=self.settings.triage.duplicate_window_days,
        )
        verdict: NarrativeVerdict | None = None
        if self.slots.acquire(blocking=bool(criteria) or not may_defer):
            try:
                verdict = self.flagger.assess(case.narrative)
            finally:
                self.slots.release()
        facts: dict[str, Any] = {
            "severity": grade,
            "serious": bool(criteria),
            "valid": not missing,
            "narrative_flagged": None if verdict is None else bool(verdict.flags),
            "duplicate": duplicate_of is not None,
            "verdict_valid": True,  # no large-model verdict on this path: nothing failed
        }
        policy = decide(facts, self.rules, workflow=WORKFLOW)
        tokens = verdict.input_tokens if verdict else 0
        if verdict is None:
            status = "deferred"
        else:
            status = "auto_accepted" if policy.auto_accept else "held_for_review"
        decision = TriageDecision(
            case_id=case.case_id,
            status=status,
            lane="hot" if verdict is not None else "deferred",
            valid=not missing,
            missing=missing,
            seriousness=criteria,
            serious=bool(criteria),
            severity=grade,
            narrative_flags=list(verdict.flags) if verdict else [],
            narrative_score=verdict.score if verdict else None,
            duplicate_of=duplicate_of,
            clock_days=clock.days,
            day_zero=clock.day_zero,
            due_date=clock.due,
            requires_review=not policy.auto_accept,
            reasons=list(policy.codes),
            model=self.flagger.name if verdict and tokens else None,
            input_tokens=tokens,
            cost_usd=call_cost(self.price, input_tokens=tokens),
            decided_at=self.clock(),
        )
        return decision, fingerprint
