"""Flows and Prefect-backed supervision against the real Prefect test harness."""

from __future__ import annotations

import shutil
from datetime import date

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from tasks.io.lake import Lake
from tasks.io.orchestrator import server_configured as prefect_server_configured
from tasks.schemas import DECISION, LEDGER
from tasks.services.audit import verify
from tasks.services.runtime import Runtime
from tasks.services.supervisor import limit_name, throttle
from tasks.settings import DEFAULT_CONFIG_DIR, load_settings
from tests.conftest import real_medline_records, write_medline
from tests.io.test_finops import _decisions, _ledger


@pytest.mark.slow
def test_weekly_finops_writes_the_report_and_publishes_artifacts(isolated_home):
    from flows.weekly_finops import weekly_finops

    settings = load_settings()
    lake = Lake(settings.lake_dir)
    lake.write("ledger", _ledger(), LEDGER, partition_by="day", stem="t")
    lake.write("decisions", _decisions(), DECISION, partition_by="pub_month", stem="t")
    summary = weekly_finops(until=date(2026, 11, 22), days=7)
    assert summary.total_usd == pytest.approx(0.76)
    assert (summary.calls, summary.bursts) == (8, 2)
    html = (settings.reports_dir / "finops-20261116-20261122.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["finops-summary"]))
        )
    assert any("760,000.000 µ$" in str(a.data) for a in artifacts)


def test_prefect_rate_limit_throttles_calls_per_minute(tmp_path, isolated_home):
    config = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    (config / "budgets.yaml").write_text(
        "throttles:\n  - {workflow: harness-throttled, calls_per_minute: 3}\n"
    )
    settings = load_settings(config_dir=config)
    assert prefect_server_configured()
    for _ in range(3):
        throttle(
            Runtime.for_settings(settings), "harness-throttled", timeout_seconds=30
        )  # slots are free: no wait
    with pytest.raises(TimeoutError):
        throttle(Runtime.for_settings(settings), "harness-throttled", timeout_seconds=0.5)
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name("harness-throttled"))
    assert (limit.limit, limit.slot_decay_per_second) == (3, pytest.approx(0.05))
    # the embedded bucket was not used: no SQLite file was created
    assert not (settings.supervisor_dir / "budget.sqlite").exists()


@pytest.mark.slow
def test_scan_writes_one_audit_entry_per_decision_and_none_twice(tmp_path, isolated_home):
    from flows.nightly_literature_scan import ScanParams, nightly_literature_scan

    source = write_medline(tmp_path / "few.xml", real_medline_records(15))
    params = ScanParams(sources=[str(source)])
    first = nightly_literature_scan(**params.model_dump())
    settings = load_settings()
    trail = Runtime.for_settings(settings).audit
    entries = trail.entries()
    assert len(entries) == first.screened > 0
    assert trail.verify().ok
    decided = Lake(settings.lake_dir).read("decisions", columns=["item_id", "decision"])
    assert sorted((e["item_id"], e["decision"]) for e in entries) == sorted(decided.rows())
    assert all(e["reason_codes"][0].startswith("PLAN_") for e in entries)
    assert not any("title" in e or "abstract" in e for e in entries)
    nightly_literature_scan(**params.model_dump())
    assert len(trail.entries()) == len(entries)
    assert trail.verify().ok
    # each chunk anchored the head it reached; the second run added no entry, so no new head
    check = verify(Runtime.for_settings(settings))
    assert check.verification.ok and check.anchors >= 1
    anchors = Lake(settings.lake_dir).read("audit_anchors")
    assert anchors["seq"].max() == len(entries)
    head = trail.last()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["nightly-literature-scan"]))
        )
    assert any(f"{head.seq}:{head.hash}" in str(a.data) for a in artifacts)
