"""Benchmark: the scan's peak RSS stays flat as its input grows (N and 10 N records).

Run with `pytest -m bench tests/bench/test_scan_memory.py -o addopts=""` (or `make bench`).
The input is re-keyed copies of the bundled MEDLINE records (every copy a new pmid, so every
copy is a new item: parsed, validated, routed, and screened when it mentions a watched
product). Each scan runs in a fresh process on a fresh PHARMALANE_HOME, which reports its own
peak RSS (``ru_maxrss``): the model, the parse and the frames, not this test's memory.
Sizes: PHARMALANE_BENCH_MEMORY_N (default 5,000; the issue asks 50,000 and 500,000: about 35
minutes on two CPU cores at load 4). Writes bench/results/scan_memory.json after each size.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import real_medline_records

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
REPO = Path(__file__).resolve().parents[2]
N = int(os.environ.get("PHARMALANE_BENCH_MEMORY_N", "5000"))
_PMID = re.compile(rb"<PMID Version=\"(\d+)\">\d+</PMID>")
_RUN = """
import json, logging, resource, sys, time
from flows.nightly_literature_scan import nightly_literature_scan

class Blocks(logging.Handler):  # the scan's per-block debug line: counts and memory only
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.rows = []
    def emit(self, record):
        if str(record.msg).startswith("block %d:"):
            n, rows_in, screened, already, rss, peak = record.args
            self.rows.append({"block": n, "rows_in": rows_in, "screened": screened,
                              "rss_mib": rss, "peak_rss_mib": peak})

blocks = Blocks()
flow_log = logging.getLogger("prefect.flow_runs")
flow_log.setLevel(logging.DEBUG)
flow_log.addHandler(blocks)
start = time.perf_counter()
summary = nightly_literature_scan(sources=[sys.argv[1]], materialise_digest=False)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows_in": summary.rows_in, "screened": summary.screened,
                  "embedded": summary.embedded, "seconds": seconds, "peak_rss_mib": peak,
                  "blocks": blocks.rows}))
"""


def _rekeyed(count: int, path: Path) -> Path:
    """``count`` copies of the bundled records, each under a new pmid, as a gzip MEDLINE file."""
    pool = real_medline_records(20788) + real_medline_records(30000, which="pubmed20n0014.xml.gz")
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(b'<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>\n')
        for index in range(count):
            pmid = str(90_000_000 + index).encode()
            record = _PMID.sub(
                rb'<PMID Version="\1">' + pmid + b"</PMID>", pool[index % len(pool)], 1
            )
            out.write(record + b"\n")
        out.write(b"</PubmedArticleSet>\n")
    return path


def _scan(source: Path, home: Path) -> dict[str, Any]:
    env = {**os.environ, "PHARMALANE_HOME": str(home), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(source)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=6 * 3600,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _commit() -> str:
    """The measured code's commit: PHARMALANE_BENCH_COMMIT for a copy made by `git archive`."""
    if os.environ.get("PHARMALANE_BENCH_COMMIT"):
        return os.environ["PHARMALANE_BENCH_COMMIT"]
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def _record(runs: dict[int, dict[str, Any]]) -> dict[str, object]:
    """Write what was measured so far (a 10 N run cut short still leaves the N figures)."""
    result: dict[str, object] = {"records": {str(k): v for k, v in runs.items()}}
    if len(runs) == 2:
        small, large = runs[N]["peak_rss_mib"], runs[10 * N]["peak_rss_mib"]
        result["larger_over_smaller_peak_rss"] = round(large / small, 3)
    result |= {
        "target": "within 20% (<= 1.2)",
        "block_rows": int(os.environ.get("PHARMALANE_SCAN__BLOCK_ROWS", "20000")),
        "commit": _commit(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scan_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


@pytest.mark.bench
@pytest.mark.timeout(6 * 3600)
def test_peak_rss_is_flat_from_n_to_ten_n_records(tmp_path_allowed, tmp_path):
    runs: dict[int, dict[str, Any]] = {}
    for count in (N, 10 * N):
        source = _rekeyed(count, tmp_path / f"rekeyed-{count}.xml.gz")
        started = time.perf_counter()
        result = _scan(source, tmp_path / f"home-{count}")
        assert result["rows_in"] == count
        blocks = result.pop("blocks")
        runs[count] = {
            **{k: round(v, 2) for k, v in result.items()},
            "blocks": blocks,
            "items_per_s": round(count / result["seconds"], 1),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        summary = _record(runs)
    assert runs[10 * N]["peak_rss_mib"] <= 1.2 * runs[N]["peak_rss_mib"], summary
