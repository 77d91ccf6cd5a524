"""The triage hot path: deterministic tools, the small narrative model, the supervisor.

Runs inline in the intake service (no Prefect run per case). The decision is stored durably
before it is returned; the Prefect lane (``flows/urgent_ae_triage.py``) books it later.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
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


LANE_SUBMITTER = "urgent-ae-triage-lane"  # whose model slots the batch lane's settling uses


class SlotPool:
    """At most ``total`` narrative-model calls at once, at most ``per_owner`` for one submitter.

    Why: one key's burst of serious cases must not hold every slot while another submitter's
    death case waits behind it. Thread-safe; waiting is bounded by the caller's timeout.
    """

    def __init__(self, total: int, per_owner: int):
        self.total, self.per_owner = total, min(per_owner, total)
        self._held: Counter[str] = Counter()
        self._changed = threading.Condition()

    def _free_for(self, owner: str) -> bool:
        return self._held.total() < self.total and self._held[owner] < self.per_owner

    def acquire(self, owner: str, timeout: float | None) -> bool:
        """Take a slot for ``owner``; False if none frees within ``timeout`` s (None: wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self._free_for(owner):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            self._held[owner] += 1
            return True

    def release(self, owner: str) -> None:
        with self._changed:
            self._held[owner] -= 1
            if self._held[owner] <= 0:
                del self._held[owner]
            self._changed.notify_all()


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
        self.slots = SlotPool(
            settings.triage.max_in_flight, settings.triage.max_in_flight_per_submitter
        )

    @classmethod
    def build(cls, settings: Settings, store: TriageStore | None = None) -> Triager:
        catalog = load_models(settings)
        model_key = catalog.tasks[NARRATIVE_TASK]
        return cls(
            settings,
            store or TriageStore(settings.triage_db),
            NarrativeFlagger(resources.embedder(), settings.triage.narrative_threshold),
            rules=load_policies(settings).rules,
            price=catalog.models[model_key],
            model_key=model_key,
        )

    def triage(self, case: IcsrCase, submitter: str) -> tuple[TriageDecision, bool]:
        """The decision of record for ``case`` from ``submitter`` and whether this call made it.

        The same submitter resending the same report gets its first decision at no cost. Cases
        with a structured seriousness criterion wait up to ``urgent_slot_wait_s`` for a model
        slot, then are held for a human unread; others, when no slot is free, are deferred to
        the batch lane: stored, never dropped.

        Raises:
            CaseConflict: the case id names a different report or another submitter's.
        """
        known = self.store.known(case, submitter)
        if known is not None:
            return known, False
        decision, fingerprint = self._decide(case, submitter=submitter, may_defer=True)
        return self.store.accept(case, fingerprint, decision, submitter=submitter)

    def settle_deferred(self, limit: int) -> list[TriageDecision]:
        """The batch lane's half of a deferral: read the narrative, decide again, store it.

        Only cases still ``deferred`` change; the new decision is booked by the lane beside the
        deferred one, so the lake keeps both.
        """
        settled = []
        for stored in self.store.deferred(limit):
            decision, _ = self._decide(stored.case, submitter=LANE_SUBMITTER, may_defer=False)
            if self.store.settle(decision):
                settled.append(decision)
        return settled

    def _read_narrative(
        self, narrative: str, *, submitter: str, urgent: bool, may_defer: bool
    ) -> NarrativeVerdict | None:
        """The narrative model's verdict, or None when no slot came free in time.

        The lane (``may_defer=False``) waits; an urgent case waits ``urgent_slot_wait_s``; any
        other case does not wait at all.
        """
        timeout: float | None = 0.0
        if not may_defer:
            timeout = None
        elif urgent:
            timeout = self.settings.triage.urgent_slot_wait_s
        if not self.slots.acquire(submitter, timeout):
            return None
        try:
            return self.flagger.assess(narrative)
        finally:
            self.slots.release(submitter)

    def _decide(
        self, case: IcsrCase, *, submitter: str, may_defer: bool
    ) -> tuple[TriageDecision, str]:
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
        verdict = self._read_narrative(
            case.narrative, submitter=submitter, urgent=bool(criteria), may_defer=may_defer
        )
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
        if verdict is None:  # no slot in time: a serious case goes to a human unread
            status = "held_for_review" if criteria else "deferred"
        else:
            status = "auto_accepted" if policy.auto_accept else "held_for_review"
        decision = TriageDecision(
            case_id=case.case_id,
            status=status,
            lane="deferred" if status == "deferred" else "hot",
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
