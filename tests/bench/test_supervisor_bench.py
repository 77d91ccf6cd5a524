"""Supervisor and FinOps speed: budget reservations, throttle tokens, audit append/verify,
and the FinOps report over the lake at PHARMALANE_HOME (if it has a ledger).
Run with `make bench`; writes bench/results/supervisor.json and, from a real lake,
bench/results/finops_report.html."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.io.audit import AuditTrail
from tasks.io.budget import BudgetStore
from tasks.rules import Budget

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "supervisor.json"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


@pytest.mark.bench
@pytest.mark.timeout(3600)  # a benchmark runs for minutes; an hour means it hangs
def test_supervisor_throughput(tmp_path):
    results: dict[str, object] = {}
    store = BudgetStore(tmp_path / "b.sqlite")
    budget = Budget(workflow="w", period="day", usd=1e9)
    n = 2000
    t = time.perf_counter()
    held = [store.reserve(budget, 0.001, NOW) for _ in range(n)]
    results["reserve_sequential_per_s"] = _rate(n, time.perf_counter() - t)
    t = time.perf_counter()
    for r in held:
        store.settle(r, 0.0005, NOW)
    results["settle_sequential_per_s"] = _rate(n, time.perf_counter() - t)
    t = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: store.reserve(budget, 0.001, NOW), range(n)))
    results["reserve_8_threads_per_s"] = _rate(n, time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(n):
        store.take_token("w", 10**6, NOW + timedelta(microseconds=i))
    results["throttle_token_per_s"] = _rate(n, time.perf_counter() - t)

    trail = AuditTrail(tmp_path / "audit", key=b"bench-audit-key-" * 4)
    entries = [
        {
            "key": f"k{i}",
            "item_id": f"pmid-{i}",
            "decision": "escalated",
            "reason_codes": ["PLAN_ESCALATE_ESCALATED"],
            "probability": 0.1,
        }
        for i in range(10_000)
    ]
    t = time.perf_counter()
    for start in range(0, len(entries), 500):  # one append per 500-item chunk, as the scan does
        trail.append(entries[start : start + 500], now=NOW)
    results["audit_append_entries_per_s_chunks_of_500"] = _rate(10_000, time.perf_counter() - t)
    t = time.perf_counter()
    assert trail.verify().ok
    results["audit_verify_entries_per_s"] = _rate(10_000, time.perf_counter() - t)

    home = os.environ.get("PHARMALANE_HOME")
    if home and (Path(home) / "lake" / "ledger").is_dir():
        from tasks.core.finops_render import chart_series, render_chart, render_charts, render_html
        from tasks.settings import load_settings
        from tasks.steps.finops import finops_report
        from tests.io.test_finops import _ink

        t = time.perf_counter()
        report = finops_report.fn(load_settings(), NOW - timedelta(days=7), NOW + timedelta(days=1))
        results["finops_query_seconds"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        charts = render_charts(report)
        html = render_html(report, charts)
        results["finops_render_seconds"] = round(time.perf_counter() - t, 3)
        results["finops_html_bytes"] = len(html)
        results["finops_ledger_calls"] = report.calls
        results["finops_total_usd"] = round(report.total_usd, 6)
        # the attached report from a real run: every chart shows data, not an empty frame
        series = chart_series(report)
        for name, png in charts.items():
            assert series[name].height > 0, name
            assert _ink(png) > 2 * _ink(render_chart(name, series[name].clear())), name
        (RESULTS.parent / "finops_report.html").write_text(html, encoding="utf-8")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
