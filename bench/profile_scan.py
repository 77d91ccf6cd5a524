"""cProfile of one nightly scan against the raw model rate, as tests/bench/test_scan_throughput.py
measures them: where the flow spends what the raw model does not.

The bench's workload (real in-scope abstracts of the bundled MEDLINE files), a warm-up scan of
3 items on another home, then the profiled scan on a fresh home, then ``raw_rate`` on the same
texts (same model, warm). Prints flow and raw rates and the profile's top entries by
cumulative time; the profile itself goes to OUT.prof.
usage (from the repo root, PYTHONPATH=.; the Prefect env of /work/tools/check.sh):
    python bench/profile_scan.py ITEMS MAX_TOKENS WINDOW OUT   e.g. 200 256 full /tmp/p
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path

import polars as pl
from prefect.testing.utilities import prefect_test_harness

from flows.nightly_literature_scan import nightly_literature_scan
from tasks.io.medline import read_medline
from tests.bench.test_scan_throughput import BUNDLED, raw_rate
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline


def main() -> None:
    items, tokens, window, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    roots = json.dumps([str(out)])
    os.environ["PHARMALANE_PATHS__ALLOWED_INPUT_ROOTS"] = roots
    os.environ["PHARMALANE_PATHS__ALLOWED_OUTPUT_ROOTS"] = roots
    os.environ["PHARMALANE_SCAN__EMBED_MAX_TOKENS"] = str(tokens)
    os.environ["PHARMALANE_SCAN__EMBED_WINDOW"] = window
    records = [r for name, count in BUNDLED for r in real_medline_records(count, which=name)]
    wanted = pmids_mentioning_products(records, out)
    chosen = [r for r in records if pmid_of(r) in wanted and b"<AbstractText" in r][:items]
    source = write_medline(out / "bench.xml", chosen)
    warm = write_medline(out / "w.xml", chosen[:3])
    frame = read_medline(source)[0].filter(pl.col("abstract").is_not_null())
    with prefect_test_harness(server_startup_timeout=120):
        os.environ["PHARMALANE_HOME"] = str(out / "warm")
        nightly_literature_scan(sources=[str(warm)])
        os.environ["PHARMALANE_HOME"] = str(out / "home")
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        summary = nightly_literature_scan(sources=[str(source)])
        profile.disable()
        flow_s = time.perf_counter() - start
        raw, raw_s = raw_rate(frame, {"embed_max_tokens": tokens, "embed_window": window})
    flow = summary.embedded / flow_s
    print(
        f"items {summary.embedded}: flow {flow_s:.2f} s ({flow:.2f}/s), raw {raw_s:.2f} s "
        f"({raw:.2f}/s), flow/raw {flow / raw:.3f}, load {os.getloadavg()[0]:.1f}"
    )
    profile.dump_stats(out.with_suffix(".prof"))
    pstats.Stats(profile).sort_stats("cumulative").print_stats(
        "pharmalane|finetune|flows|tasks", 60
    )


if __name__ == "__main__":
    main()
