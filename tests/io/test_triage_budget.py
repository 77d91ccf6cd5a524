"""The triage lane's narrative-model calls reserve and settle against the urgent-ae-triage
budget (real SQLite store, real audit trail, the packaged MiniLM): when the budget is spent,
cases are still triaged at once, through alerted override reservations."""

from __future__ import annotations

import shutil

import pytest

from models.embedder import default_embedder
from models.narrative import NarrativeFlagger
from tasks.errors import ConfigError
from tasks.intake import IcsrCase
from tasks.io.audit import AuditTrail
from tasks.rules import load_budgets, load_models, load_policies
from tasks.services.runtime import Runtime
from tasks.services.triage import NARRATIVE_TASK, WORKFLOW, Triager, narrative_token_bound
from tasks.settings import DEFAULT_CONFIG_DIR, load_settings

NARRATIVES = [
    "Mild itching where the patch was applied. It resolved after two days.",
    "Headache on the second day of treatment. Paracetamol helped within hours.",
    "Nausea after each dose for a week. The patient kept taking the tablets.",
    "A rash appeared on both arms. It faded once the cream was stopped.",
    "Dizziness when standing up in the morning. No falls were reported.",
    "Dry mouth and thirst during the first month. Symptoms eased later.",
]


@pytest.fixture(scope="module")
def flagger():
    return NarrativeFlagger(default_embedder(), threshold=0.55)


def _settings(tmp_path, budget_line: str):
    config = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    (config / "budgets.yaml").write_text(f"budgets:\n  - {budget_line}\n")
    return load_settings(config_dir=config, home=tmp_path / "home")


def _triager(settings, flagger) -> Triager:
    catalog = load_models(settings)
    key = catalog.tasks[NARRATIVE_TASK]
    return Triager(
        Runtime.for_settings(settings),
        Runtime.for_settings(settings).triage_store,
        flagger,
        rules=load_policies(settings).rules,
        price=catalog.models[key],
        model_key=key,
    )


def _case(i: int) -> IcsrCase:
    return IcsrCase.model_validate(
        {
            "case_id": f"C-{i}",
            "received_at": "2026-03-02T09:00:00+00:00",
            "reporter": {"qualification": "physician", "country": "NL"},
            "patient": {"initials": f"P{i}", "age_years": 40 + i, "sex": "F"},
            "suspect_drugs": ["Xanomeline"],
            "reactions": [{"term": "Pruritus", "severity_grade": 1}],
            "narrative": NARRATIVES[i],
        }
    )


def test_triage_reserves_and_goes_on_over_a_spent_budget_through_alerted_overrides(
    tmp_path, flagger
):
    # ~$0.000004 per narrative bound: the first calls are grants, the rest overrides
    budget = (
        f"{{workflow: {WORKFLOW}, period: day, usd: 0.000005, on_exhaustion: continue_if_urgent}}"
    )
    settings = _settings(tmp_path, budget)
    triager = _triager(settings, flagger)
    decisions = [triager.triage(_case(i), "k-sub")[0] for i in range(len(NARRATIVES))]

    # never dropped nor delayed: every case read by the model on the hot path
    assert all(d.lane == "hot" and d.status != "deferred" and d.input_tokens for d in decisions)
    assert all(
        d.input_tokens <= narrative_token_bound(n)
        for d, n in zip(decisions, NARRATIVES, strict=True)
    )
    store = Runtime.for_settings(settings).budgets
    spend = store.spend(load_budgets(settings).budget(WORKFLOW), decisions[-1].decided_at)
    # every call was booked, at what it cost
    assert spend.settled_usd + spend.override_usd == pytest.approx(
        sum(d.cost_usd for d in decisions), abs=1e-9 * len(decisions)
    )
    assert spend.settled_usd > 0 and spend.overrides > 0 and spend.overages == 0
    assert spend.open_reservations == 0
    assert spend.settled_usd <= 0.000005  # granted spend stays within the limit
    # each override is alerted in the audit trail, naming its reservation
    alerts = [
        e
        for e in AuditTrail(settings.audit_dir).entries()
        if e["kind"] == "budget_exhausted" and e["workflow"] == WORKFLOW
    ]
    assert {a["action"] for a in alerts} == {"continue_over_budget"}
    assert [a["reservation"] for a in alerts] == [i for i, _ in store.overrides(WORKFLOW)]
    assert {r for _, r in store.overrides(WORKFLOW)} == {"BUDGET_EXHAUSTED_URGENT_SAFETY_CONTINUES"}


@pytest.mark.parametrize(
    "budget",
    [
        f"{{workflow: {WORKFLOW}, period: day, usd: 1.0, on_exhaustion: defer}}",
        f"{{workflow: {WORKFLOW}, period: day, usd: 1.0, on_exhaustion: route_down}}",
        "{workflow: some-other-lane, period: day, usd: 1.0, on_exhaustion: continue_if_urgent}",
    ],
)
def test_a_triage_budget_that_could_delay_a_case_is_refused_at_start(tmp_path, flagger, budget):
    settings = _settings(tmp_path, budget)
    with pytest.raises(ConfigError, match=WORKFLOW):
        _triager(settings, flagger)
