"""One intake process for the multi-process tests: its own app and store on a shared home.

Run as ``python -m tests.triage_intake_worker HOME NAME``. It builds the real app (real store,
packaged MiniLM), writes ``HOME/NAME.ready``, waits for ``HOME/go`` so that both processes
start together, then submits the cases its name calls for and hammers the reviewer's rate
limit, and writes what it was answered to ``HOME/NAME.json``. The rate clock is fixed, so
the shared bucket grants an exact number of requests whatever the scheduling.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from flows.triage_app import create_app
from tests.triage_app import HEADERS, build, report

RATE_PER_MINUTE = 60
SHARED = [f"S-{i}" for i in range(15)]  # both workers, same key, same report
CONTESTED = [f"T-{i}" for i in range(10)]  # both workers, different keys and reports
READS = 40  # reviewer reads per worker: 80 tries against one bucket of 60


def shared_case(case_id: str) -> dict[str, Any]:
    return report(case_id, patient={"initials": "SH", "age_years": 30 + int(case_id[2:])})


def contested_case(case_id: str, worker: str) -> dict[str, Any]:
    if worker == "one":
        return report(case_id, outcome={"death": True}, patient={"initials": "DE", "sex": "M"})
    return report(case_id, patient={"initials": "HA", "age_years": 50 + int(case_id[2:])})


def answer(response: Any) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "replay": response.headers.get("Idempotent-Replay"),
        "body": response.json(),
    }


def main(home: Path, worker: str) -> None:
    triager, settings = build(home, rate_per_minute=RATE_PER_MINUTE)
    client = TestClient(create_app(settings, triager, rate_clock=lambda: 1_000_000.0))
    (home / f"{worker}.ready").touch()
    while not (home / "go").exists():
        time.sleep(0.01)
    contested_key = HEADERS["a"] if worker == "one" else HEADERS["b"]
    jobs = [(c, shared_case(c), HEADERS["a"]) for c in SHARED] + [
        (c, contested_case(c, worker), contested_key) for c in CONTESTED
    ]
    with ThreadPoolExecutor(4) as pool:
        posted = pool.map(lambda j: (j[0], client.post("/cases", json=j[1], headers=j[2])), jobs)
        answers = {case_id: answer(response) for case_id, response in posted}
        reads = list(
            pool.map(lambda _: client.get("/cases/none", headers=HEADERS["rev"]), range(READS))
        )
    result = {"answers": answers, "reads": [r.status_code for r in reads]}
    (home / f"{worker}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
