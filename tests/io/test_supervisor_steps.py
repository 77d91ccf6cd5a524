"""admit / settle / throttle on the real SQLite store, embedded (no Prefect API configured)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from tasks.io.audit import AuditTrail
from tasks.settings import DEFAULT_CONFIG_DIR, load_settings
from tasks.steps import resources
from tasks.steps.supervisor import admit, settle, throttle

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BUDGETS = """
budgets:
  - {workflow: urgent-ae-triage, period: day, usd: 1.0, on_exhaustion: continue_if_urgent}
  - {workflow: nightly-literature-scan, period: day, usd: 1.0, on_exhaustion: route_down}
throttles:
  - {workflow: urgent-ae-triage, calls_per_minute: 2}
"""


@pytest.fixture
def settings(tmp_path, isolated_home):
    config = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    (config / "budgets.yaml").write_text(BUDGETS)
    return load_settings(config_dir=config)


def test_admit_reserves_then_policy_decides_on_exhaustion(settings):
    ticket = admit(settings, "urgent-ae-triage", 0.8, urgent=False, now=NOW)
    assert ticket.admission.action == "run" and ticket.reservation is not None
    over = admit(settings, "urgent-ae-triage", 0.5, urgent=False, now=NOW)
    assert over.admission.action == "defer" and over.reservation is None
    assert over.admission.alert
    urgent = admit(settings, "urgent-ae-triage", 0.5, urgent=True, now=NOW)
    assert urgent.admission.action == "continue_over_budget"
    assert urgent.admission.reasons[0].code == "BUDGET_EXHAUSTED_URGENT_SAFETY_CONTINUES"
    # the first call cost less than estimated: settling frees room for the next one
    settle(settings, ticket, 0.3, now=NOW)
    assert admit(settings, "urgent-ae-triage", 0.5, urgent=False, now=NOW).admission.runs
    scan = admit(settings, "nightly-literature-scan", 1.5, urgent=None, now=NOW)
    assert scan.admission.action == "route_down"
    assert admit(settings, "no-budget-workflow", 99.0, urgent=None, now=NOW).admission.runs
    # every exhaustion is a reason of record in the audit trail
    alerts = [
        e for e in AuditTrail(settings.audit_dir).entries() if e["kind"] == "budget_exhausted"
    ]
    assert [(e["workflow"], e["action"]) for e in alerts] == [
        ("urgent-ae-triage", "defer"),
        ("urgent-ae-triage", "continue_over_budget"),
        ("nightly-literature-scan", "route_down"),
    ]
    assert alerts[2]["reason_codes"] == ["BUDGET_EXHAUSTED_ROUTED_DOWN"]


def test_embedded_throttle_gives_the_rate_then_times_out(settings):
    for _ in range(2):
        throttle(settings, "urgent-ae-triage", timeout_seconds=0, backend="embedded")
    with pytest.raises(TimeoutError, match="urgent-ae-triage"):
        throttle(settings, "urgent-ae-triage", timeout_seconds=0, backend="embedded")
    assert (settings.supervisor_dir / "budget.sqlite").is_file()
    # no throttle declared for this workflow
    throttle(settings, "nightly-literature-scan", timeout_seconds=0, backend="embedded")


def test_cli_audit_verify_names_the_first_bad_entry(isolated_home):
    from flows.cli import app

    trail = resources.audit(load_settings())
    trail.append(
        [{"key": f"k{i}", "item_id": f"pmid-{i}", "decision": "escalated"} for i in range(4)],
        now=NOW,
    )
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "intact: 4 entries" in ok.output
    lines = trail.trail.read_text().splitlines()
    trail.trail.write_text(
        "\n".join([lines[0], lines[1].replace("escalated", "closed"), *lines[2:]]) + "\n"
    )
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1
    assert "BROKEN at entry 2" in bad.output
