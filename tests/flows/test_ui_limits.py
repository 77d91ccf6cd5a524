"""`make ui` creates every global concurrency limit the lanes acquire; twice is a no-op."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from tasks.rules import load_budgets
from tasks.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def _ensure_limits() -> list[str]:
    """deploy/concurrency_limits.py as deploy/ui.sh runs it, against the test server."""
    done = subprocess.run(
        [sys.executable, "deploy/concurrency_limits.py"],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_every_lane_limit_exists_sized_from_the_configs_and_twice_is_a_no_op():
    throttles = load_budgets(load_settings()).throttles
    expected = {"urgent-ae-triage": (1, 0.0)} | {
        f"model-calls-{t.workflow}": (t.calls_per_minute, t.calls_per_minute / 60)
        for t in throttles
    }
    assert set(_ensure_limits()) == set(expected)
    with get_client(sync_client=True) as client:
        first = {limit.name: limit for limit in client.read_global_concurrency_limits(limit=200)}
    assert {
        name: (first[name].limit, first[name].slot_decay_per_second) for name in expected
    } == expected

    assert set(_ensure_limits()) == set(expected)
    with get_client(sync_client=True) as client:
        again = {limit.name: limit.id for limit in client.read_global_concurrency_limits(limit=200)}
    assert {name: again[name] for name in expected} == {name: first[name].id for name in expected}
