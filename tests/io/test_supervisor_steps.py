"""admit / settle / throttle on the real SQLite store, embedded (no Prefect API configured)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from tasks.io.audit import AuditTrail
from tasks.rules import load_budgets
from tasks.services.runtime import Runtime
from tasks.services.supervisor import admit, settle, throttle
from tasks.settings import DEFAULT_CONFIG_DIR, load_settings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BUDGETS = """
budgets:
  - {workflow: urgent-ae-triage, period: day, usd: 1.0, on_exhaustion: continue_if_urgent}
  - {workflow: nightly-literature-scan, period: day, usd: 1.0, on_exhaustion: route_down}
throttles:
  - {workflow: urgent-ae-triage, calls_per_minute: 2}
"""


@pytest.fixture
def settings(tmp_path, isolated_home, monkeypatch):
    config = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    (config / "budgets.yaml").write_text(BUDGETS)
    monkeypatch.setenv("PHARMALANE_CONFIG_DIR", str(config))
    return load_settings(config_dir=config)


def _entries(settings, kind):
    return [e for e in AuditTrail(settings.audit_dir).entries() if e["kind"] == kind]


def test_admit_reserves_then_policy_decides_on_exhaustion(settings):
    ticket = admit(Runtime.for_settings(settings), "urgent-ae-triage", 0.8, urgent=False, now=NOW)
    assert ticket.admission.action == "run" and ticket.reservation.kind == "grant"
    over = admit(Runtime.for_settings(settings), "urgent-ae-triage", 0.5, urgent=False, now=NOW)
    assert over.admission.action == "defer" and over.reservation is None
    assert over.admission.alert
    urgent = admit(Runtime.for_settings(settings), "urgent-ae-triage", 0.5, urgent=True, now=NOW)
    assert urgent.admission.action == "continue_over_budget"
    assert urgent.admission.reasons[0].code == "BUDGET_EXHAUSTED_URGENT_SAFETY_CONTINUES"
    # going on over budget is booked: an override reservation, held like any other
    assert urgent.reservation.kind == "override"
    # the first call cost less than estimated: settling frees room, the override still holds
    settle(Runtime.for_settings(settings), ticket, 0.3, now=NOW)
    assert not admit(
        Runtime.for_settings(settings), "urgent-ae-triage", 0.5, urgent=False, now=NOW
    ).admission.runs
    assert admit(
        Runtime.for_settings(settings), "urgent-ae-triage", 0.2, urgent=False, now=NOW
    ).admission.runs
    scan = admit(
        Runtime.for_settings(settings), "nightly-literature-scan", 1.5, urgent=None, now=NOW
    )
    assert scan.admission.action == "route_down"
    assert admit(
        Runtime.for_settings(settings), "no-budget-workflow", 99.0, urgent=None, now=NOW
    ).admission.runs
    # every exhaustion is a reason of record in the audit trail; an override names its row
    alerts = _entries(settings, "budget_exhausted")
    assert [(e["workflow"], e["action"]) for e in alerts] == [
        ("urgent-ae-triage", "defer"),
        ("urgent-ae-triage", "continue_over_budget"),
        ("urgent-ae-triage", "defer"),
        ("nightly-literature-scan", "route_down"),
    ]
    assert alerts[3]["reason_codes"] == ["BUDGET_EXHAUSTED_ROUTED_DOWN"]
    overrides = Runtime.for_settings(settings).budgets.overrides("urgent-ae-triage")
    assert overrides == [(urgent.reservation.id, "BUDGET_EXHAUSTED_URGENT_SAFETY_CONTINUES")]
    assert [e["reservation"] for e in alerts if e["action"] == "continue_over_budget"] == [
        urgent.reservation.id
    ]


def test_an_actual_above_its_estimate_is_an_alerted_overage_and_shuts_the_period(settings):
    ticket = admit(
        Runtime.for_settings(settings), "nightly-literature-scan", 0.4, urgent=None, now=NOW
    )
    settle(Runtime.for_settings(settings), ticket, 0.8, now=NOW)  # twice the estimate
    [overage] = _entries(settings, "budget_overage")
    assert overage["reservation"] == ticket.reservation.id
    assert (overage["estimate_usd"], overage["overage_usd"]) == (0.4, 0.4)
    spend = Runtime.for_settings(settings).budgets.spend(
        load_budgets(settings).budget(overage["workflow"]), NOW
    )
    assert (spend.settled_usd, spend.overage_usd, spend.overages) == (0.4, 0.4, 1)
    # $0.20 of headroom by the numbers, but the estimates lied: nothing more this period
    assert admit(
        Runtime.for_settings(settings), "nightly-literature-scan", 0.1, urgent=None, now=NOW
    ).admission.action == ("route_down")


def test_budget_status_shows_overrides_and_overages_apart_and_exits_1(settings):
    from flows.cli import app

    runner = CliRunner()
    calm = runner.invoke(app, ["budget", "status"])
    assert calm.exit_code == 0, calm.output
    now = datetime.now(UTC)
    admit(Runtime.for_settings(settings), "urgent-ae-triage", 1.0, urgent=True, now=now)
    settle(
        Runtime.for_settings(settings),
        admit(Runtime.for_settings(settings), "urgent-ae-triage", 0.3, urgent=True, now=now),
        0.6,
        now=now,
    )
    result = runner.invoke(app, ["budget", "status"], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    row = next(line for line in result.output.splitlines() if "│ urgent-ae-triage" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    # reserved (the $1.00 grant in flight), lapsed, override, overage, remaining
    assert cells[4:9] == ["$1.000000 (1)", "$0.000000 (0)", "$0.300000 (1)", "$0.300000 (1)",
                          "$-0.600000"]  # fmt: skip
    assert result.output.rstrip().endswith("urgent-ae-triage")


def test_embedded_throttle_gives_the_rate_then_times_out(settings):
    for _ in range(2):
        throttle(
            Runtime.for_settings(settings),
            "urgent-ae-triage",
            timeout_seconds=0,
            backend="embedded",
        )
    with pytest.raises(TimeoutError, match="urgent-ae-triage"):
        throttle(
            Runtime.for_settings(settings),
            "urgent-ae-triage",
            timeout_seconds=0,
            backend="embedded",
        )
    assert (settings.supervisor_dir / "budget.sqlite").is_file()
    # no throttle declared for this workflow
    throttle(
        Runtime.for_settings(settings),
        "nightly-literature-scan",
        timeout_seconds=0,
        backend="embedded",
    )


def test_cli_audit_verify_names_the_first_bad_entry(isolated_home):
    from flows.cli import app

    trail = Runtime.for_settings(load_settings()).audit
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
