"""Create every global concurrency limit the lanes acquire; idempotent. Run by deploy/ui.sh.

Against the Prefect server in ``PREFECT_API_URL``: the triage lane's ``urgent-ae-triage`` (held
strictly: without it the lane fails) and one ``model-calls-<workflow>`` rate limit per throttle
in configs/budgets.yaml. They are made by the functions the lanes themselves call, so the names
and sizes are the ones the code acquires; a limit that exists is kept (a rate limit whose size
no longer matches budgets.yaml is replaced). Prints the names, one a line.
"""

from __future__ import annotations

import sys

from tasks.io.orchestrator import ensure_global_limit, ensure_rate_limit
from tasks.rules import load_budgets
from tasks.services.supervisor import limit_name
from tasks.services.triage import WORKFLOW as TRIAGE_LANE
from tasks.settings import load_settings


def ensure_all() -> list[str]:
    """Create what is missing; return the name of every limit a lane acquires."""
    ensure_global_limit(TRIAGE_LANE)
    throttles = load_budgets(load_settings()).throttles
    return [
        TRIAGE_LANE,
        *(ensure_rate_limit(limit_name(t.workflow), t.calls_per_minute) for t in throttles),
    ]


if __name__ == "__main__":
    sys.stdout.write("".join(f"{name}\n" for name in ensure_all()))
