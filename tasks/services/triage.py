"""The triage hot path: deterministic tools, the small narrative model, the Supervisor.

Runs inline in the intake service (no Prefect run per case). The decision is stored durably
before it is returned; the Prefect lane (``flows/urgent_ae_triage.py``) books it later.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from models.narrative import NarrativeFlagger, NarrativeVerdict
from tasks.core.pricing import call_cost
from tasks.errors import ConfigError
from tasks.intake import IcsrCase, TriageDecision
from tasks.io.triage_store import TriageCases
from tasks.policy.engine import Decision, decide
from tasks.policy.supervisor import on_exhausted
from tasks.rules import Budget, ModelPrice, PolicyRule, load_ime_terms
from tasks.services.runtime import Runtime, utcnow
from tasks.services.supervisor import admit_within, settle
from tasks.tools import icsr, linking
from tasks.tools.case_reading import SEVERITY_CUES, CaseReading, read_case
from tasks.tools.ime import ime_patterns
from tasks.tools.text import check_english, normalise_text

WORKFLOW = "urgent-ae-triage"
TERM_VECTORS_KEPT = 4096
NARRATIVE_TASK = "triage-narrative"


def narrative_token_bound(narrative: str) -> int:
    """The most tokens the narrative model can read of ``narrative``: the triage reservation.

    WordPiece makes at most one token per character, plus two special tokens per embedded
    piece of at least 8 characters; twice the length (and a floor) also covers pieces that
    overlap. An actual above it is still booked, as an alerted overage.
    """
    return 2 * len(narrative) + 64


def triage_budget(runtime: Runtime, rules: Sequence[PolicyRule]) -> Budget:
    """The triage lane's budget, which must let urgent work go on when spent.

    Triage is urgent safety work: a case is never dropped or delayed for money, so a spent
    budget must lead to the alerted urgent-safety override, never to a deferral.

    Raises:
        ConfigError: no budget for the lane, or the policy would defer urgent work on it.
    """
    budget = runtime.rules.budgets.budget(WORKFLOW)
    if budget is None:
        raise ConfigError(f"configs/budgets.yaml has no budget for {WORKFLOW}: add one")
    if on_exhausted(budget, rules, urgent=True).action != "continue_over_budget":
        raise ConfigError(
            f"{WORKFLOW} is urgent safety work: its budget needs on_exhaustion: "
            "continue_if_urgent and a policy rule that lets urgent work go on"
        )
    return budget


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
        runtime: Runtime,
        store: TriageCases,
        flagger: NarrativeFlagger,
        *,
        rules: Sequence[PolicyRule],
        price: ModelPrice,
        model_key: str,
        clock: Callable[[], datetime] = utcnow,
    ):
        self.runtime, self.store, self.flagger = runtime, store, flagger
        self.settings = runtime.settings
        self.rules, self.price, self.model_key, self.clock = rules, price, model_key, clock
        triage = self.settings.triage
        self.slots = SlotPool(triage.max_in_flight, triage.max_in_flight_per_submitter)
        self.budget = triage_budget(runtime, rules)
        self.ime_patterns = ime_patterns(load_ime_terms(self.settings).terms)
        self._term_vectors: dict[str, Any] = {}
        self._terms_lock = threading.Lock()

    @classmethod
    def build(cls, runtime: Runtime, store: TriageCases | None = None) -> Triager:
        """The triager of ``runtime``'s settings with the packaged narrative model."""
        catalog, triage = runtime.rules.models, runtime.settings.triage
        model_key = catalog.tasks[NARRATIVE_TASK]
        return cls(
            runtime,
            store or runtime.triage_store,
            NarrativeFlagger(
                runtime.embedder,
                triage.narrative_threshold,
                clear_below=triage.clear_below,
                max_windows=triage.max_narrative_windows,
            ),
            rules=runtime.rules.policies.rules,
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
        decision, fingerprint = self._decide(
            case, submitter=submitter, owner=submitter, may_defer=True
        )
        stored, created = self.store.accept(case, fingerprint, decision, submitter=submitter)
        if created:
            self._link(stored)
        return stored, created

    def _link(self, decision: TriageDecision) -> None:
        """Record a possible follow-up both ways in the store."""
        if decision.follow_up_of is not None:
            self.store.link(
                decision.case_id,
                decision.follow_up_of,
                kind="possible_follow_up",
                score=decision.follow_up_score or 0.0,
            )

    def settle_deferred(self, limit: int) -> list[TriageDecision]:
        """The batch lane's half of a deferral: read the narrative, decide again, store it.

        Only cases still ``deferred`` change; the new decision is booked by the lane beside the
        deferred one, so the lake keeps both.
        """
        settled = []
        for stored in self.store.deferred(limit):
            decision, _ = self._decide(
                stored.case, submitter=LANE_SUBMITTER, owner=stored.submitter, may_defer=False
            )
            if self.store.settle(decision):
                self._link(decision)
                settled.append(decision)
        return settled

    def _assess_within_budget(self, narrative: str) -> NarrativeVerdict:
        """The narrative model's reading, reserved and settled against the triage budget.

        Urgent: a spent budget goes on through the alerted override reservation. A reading
        that failed may have cost its estimate, so it settles at the estimate.
        """
        estimate = call_cost(self.price, input_tokens=narrative_token_bound(narrative))
        ticket = admit_within(
            self.runtime, self.budget, self.rules, estimate, urgent=True, now=self.clock()
        )
        try:
            verdict = self.flagger.assess(narrative)
        except BaseException:
            settle(self.runtime, ticket, estimate, now=self.clock())
            raise
        actual = call_cost(self.price, input_tokens=verdict.input_tokens)
        settle(self.runtime, ticket, actual, now=self.clock())
        return verdict

    def _read(
        self, text: str, model_text: str, *, submitter: str, urgent: bool, may_defer: bool
    ) -> tuple[NarrativeVerdict | None, icsr.NarrativeReading]:
        """The narrative model's reading of the whole normalised narrative.

        The model reads ``model_text``: the narrative with discounted mentions cut out
        (``tasks.tools.case_reading``). None when no slot came free in time: the lane
        (``may_defer=False``) waits; an urgent case waits ``urgent_slot_wait_s``; any other
        case does not wait at all. A narrative the analysis does not support (not plainly
        English, or too long to read whole) is read for flags but clears nothing.
        """
        if not text:
            return self.flagger.assess(text), "empty"  # no model call
        timeout: float | None = 0.0
        if not may_defer:
            timeout = None
        elif urgent:
            timeout = self.settings.triage.urgent_slot_wait_s
        if not self.slots.acquire(submitter, timeout):
            return None, "not_read"
        try:
            verdict = self._assess_within_budget(model_text)
        finally:
            self.slots.release(submitter)
        if verdict.assessment == "too_long":
            return verdict, "too_long"
        if not check_english(text).supported:
            return verdict, "unsupported_language"
        if verdict.assessment == "empty":  # read whole: every mention in it was discounted
            return verdict, "clear"
        return verdict, verdict.assessment

    def _decide(
        self, case: IcsrCase, *, submitter: str, owner: str | None, may_defer: bool
    ) -> tuple[TriageDecision, str]:
        """Tools, the narrative reading and the policy. Non-seriousness must be established for
        an auto-accept; anything short of that is held, on the clock of every criterion left
        open (``icsr.establish_seriousness``). ``submitter`` owns the model slot, ``owner``
        sent the case (follow-ups are looked for among its cases only)."""
        text = normalise_text(case.narrative)
        reading = read_case(
            text, [normalise_text(r.term) for r in case.reactions], self.ime_patterns
        )
        fingerprint = icsr.duplicate_fingerprint(case)
        duplicate_of = icsr.find_duplicate(
            case,
            fingerprint,
            self.store.recent(fingerprint),
            window_days=self.settings.triage.duplicate_window_days,
        )
        follow_up = self._follow_up(case, owner, duplicate_of)
        urgent = bool(icsr.seriousness(case.outcome) or reading.ime.certain)
        verdict, state = self._read(
            text, reading.model_text, submitter=submitter, urgent=urgent, may_defer=may_defer
        )
        finding = icsr.with_medically_important(
            icsr.establish_seriousness(
                case.outcome, reading=state, cleared=verdict.cleared if verdict else ()
            ),
            certain=bool(reading.ime.certain),
            uncertain=bool(reading.ime.uncertain),
        )
        grade = self._severity(case, reading, verdict)
        facts: dict[str, Any] = {
            "severity": grade.grade,  # None (nothing to infer from) fails safe: held
            "serious": finding.serious,  # None (not established) fails safe: held
            "seriousness_basis": finding.basis,
            "valid": not icsr.missing_minimum_criteria(case),
            "narrative_flagged": None if verdict is None else bool(verdict.flags),
            "medically_important_event": bool(reading.ime.certain),
            "medically_important_uncertain": bool(reading.ime.uncertain),
            "duplicate": duplicate_of is not None,
            "follow_up": follow_up is not None,
            "verdict_valid": True,  # no large-model verdict on this path: nothing failed
        }
        policy = decide(facts, self.rules, workflow=WORKFLOW)
        decision = self._decision(case, verdict, finding, policy, duplicate_of=duplicate_of)
        linked = {
            "follow_up_of": follow_up.case_id if follow_up else None,
            "follow_up_score": follow_up.score if follow_up else None,
        }
        return decision.model_copy(update=_reading_fields(reading, grade) | linked), fingerprint

    def _follow_up(
        self, case: IcsrCase, owner: str | None, duplicate_of: str | None
    ) -> linking.FollowUp | None:
        """A recent case of the same submitter this one may follow up (not its exact duplicate)."""
        triage = self.settings.triage
        if owner is None or triage.follow_up_candidates == 0:
            return None
        recent = [
            c
            for c in self.store.recent_of(owner, triage.follow_up_candidates)
            if c.case_id != duplicate_of
        ]
        return linking.find_follow_up(
            case, recent, window_days=triage.duplicate_window_days, term_cosine=self._term_cosine
        )

    def _term_cosine(self, mine: Sequence[str], theirs: Sequence[str]) -> float:
        """The best cosine between two lists of reaction terms, on the packaged embedder.

        Reaction terms repeat (MedDRA terms), so their vectors are kept, up to
        ``TERM_VECTORS_KEPT``: comparing one case with two hundred recent ones embeds only
        the terms not seen before.
        """
        with self._terms_lock:
            unseen = sorted({t for t in [*mine, *theirs] if t not in self._term_vectors})
            if unseen:
                if len(self._term_vectors) + len(unseen) > TERM_VECTORS_KEPT:
                    self._term_vectors.clear()
                vectors = self.flagger.embedder.embed(unseen)
                self._term_vectors.update(zip(unseen, vectors, strict=True))
            a = np.stack([self._term_vectors[t] for t in mine])
            b = np.stack([self._term_vectors[t] for t in theirs])
        return float((a @ b.T).max())

    @staticmethod
    def _severity(
        case: IcsrCase, reading: CaseReading, verdict: NarrativeVerdict | None
    ) -> icsr.SeverityFinding:
        """The reported grade, else the one the outcome, the narrative and the events imply."""
        return icsr.infer_severity(
            case,
            narrative_criteria=reading.criteria | set(verdict.flags if verdict else ()),
            medically_important=bool(reading.ime.certain or reading.ime.uncertain),
            cues={name: SEVERITY_CUES[name][0] for name in reading.severity_cues},
        )

    def _decision(
        self,
        case: IcsrCase,
        verdict: NarrativeVerdict | None,
        finding: icsr.SeriousnessFinding,
        policy: Decision,
        *,
        duplicate_of: str | None,
    ) -> TriageDecision:
        """The decision of record, on the clock of every criterion not ruled out."""
        clock = icsr.regulatory_clock(
            case.received_at,
            site_timezone=self.settings.triage.site_timezone,
            criteria=finding.possible,
            study_case=case.study_case,
            expected=case.expected,
        )
        missing = icsr.missing_minimum_criteria(case)
        tokens = verdict.input_tokens if verdict else 0
        if verdict is None:  # no slot in time: a serious case goes to a human unread
            status = "held_for_review" if finding.serious else "deferred"
        else:
            status = "auto_accepted" if policy.auto_accept else "held_for_review"
        return TriageDecision(
            case_id=case.case_id,
            status=status,
            lane="deferred" if status == "deferred" else "hot",
            valid=not missing,
            missing=missing,
            seriousness=icsr.seriousness(case.outcome),
            serious=finding.serious,
            possible_seriousness=finding.possible,
            severity=icsr.severity(case),
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


def _reading_fields(reading: CaseReading, grade: icsr.SeverityFinding) -> dict[str, Any]:
    """What the rule-based reading adds to a decision: no narrative text, codes only."""
    return {
        "severity_inferred": grade.grade if grade.inferred else None,
        "severity_basis": grade.basis,
        "medically_important": list(reading.ime.certain),
        "medically_important_uncertain": list(reading.ime.uncertain),
        "discounted_mentions": list(reading.discounted),
    }
