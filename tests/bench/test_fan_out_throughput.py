"""Benchmark: scan items/s sequentially vs on 2 Dask workers, and a 1M-abstract projection.

Run with `make bench` (or `pytest -m bench tests/bench/test_fan_out_throughput.py -o addopts=`).
Writes bench/results/fan_out_throughput.json. Every item is a real abstract that mentions a
watched product, so every item pays the model path (the worst case of a nightly run). Three
runs, each on a fresh lake and vector store, after the Prefect API and the flow process's model
are warm: sequential (``scan.executor: sequential``), ``local-cluster`` (the flow starts its 2
workers, each loads the model: what one `pharmalane scan` pays) and ``address`` (an existing
2-worker cluster whose workers have loaded the model: the steady state of a production cluster,
from which the per-chunk cost and the projection come). The load average is recorded beside
every figure: on a shared 2-core machine it decides the numbers more than the code does.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from flows.nightly_literature_scan import nightly_literature_scan
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
ITEMS = int(os.environ.get("PHARMALANE_BENCH_ITEMS", "256"))
CHUNK = int(os.environ.get("PHARMALANE_BENCH_CHUNK", "32"))
NIGHTLY = 1_000_000  # abstracts in the projected nightly run
PRODUCTION_CHUNK = 2048  # configs/prod.yaml scan.chunk_size


def _warm_worker() -> int:
    from models.embedder import default_embedder

    default_embedder().embed(["warm the model"], batch_size=1)
    return os.getpid()


def _timed_scan(home: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    monkeypatch.setenv("PHARMALANE_HOME", str(home))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    summary = nightly_literature_scan(sources=[str(source)])
    seconds = time.perf_counter() - start
    assert summary.embedded == ITEMS
    return {
        "seconds": round(seconds, 2),
        "items_per_s": round(summary.embedded / seconds, 2),
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


@pytest.mark.bench
@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.usefixtures("tmp_path_allowed")
def test_fan_out_throughput(tmp_path, monkeypatch):
    records = real_medline_records(20788)
    wanted = pmids_mentioning_products(records, tmp_path)
    chosen = [r for r in records if pmid_of(r) in wanted and b"<AbstractText" in r][:ITEMS]
    assert len(chosen) == ITEMS
    source = write_medline(tmp_path / "bench.xml", chosen)
    monkeypatch.setenv("PHARMALANE_SCAN__CHUNK_SIZE", str(CHUNK))
    monkeypatch.setenv("PHARMALANE_HOME", str(tmp_path / "warmup"))
    nightly_literature_scan(sources=[str(write_medline(tmp_path / "w.xml", chosen[:3]))])

    runs = {"sequential": _timed_scan(tmp_path / "sequential", source, monkeypatch)}
    monkeypatch.setenv("PHARMALANE_SCAN__EXECUTOR", "local-cluster")
    monkeypatch.setenv("PHARMALANE_SCAN__WORKERS", "2")
    runs["local_cluster_2"] = _timed_scan(tmp_path / "local", source, monkeypatch)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_warm_worker)
        monkeypatch.setenv("PHARMALANE_SCAN__EXECUTOR", "address")
        monkeypatch.setenv("PHARMALANE_SCAN__DASK_ADDRESS", cluster.scheduler_address)
        runs["address_2_warm"] = _timed_scan(tmp_path / "address", source, monkeypatch)

    chunks = -(-ITEMS // CHUNK)
    # worker-seconds per chunk of CHUNK items on one single-threaded worker, steady state
    per_chunk_s = runs["address_2_warm"]["seconds"] * 2 / chunks
    per_item_s = per_chunk_s / CHUNK
    result = {
        "items": ITEMS,
        "chunk_size": CHUNK,
        "chunks": chunks,
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "dask_over_sequential": round(
            runs["address_2_warm"]["items_per_s"] / runs["sequential"]["items_per_s"], 3
        ),
        "worker_seconds_per_chunk": round(per_chunk_s, 3),
        "worker_seconds_per_item": round(per_item_s, 5),
        "projection_1m_in_scope_abstracts_hours": {
            str(n): round(NIGHTLY * per_item_s / n / 3600, 2) for n in (2, 8, 32, 128)
        },
        "projection_note": (
            "1M abstracts that all pay the model path, chunks of "
            f"{PRODUCTION_CHUNK}, N single-threaded workers like these, no scheduler or "
            "shared-state contention: a lower bound on wall time"
        ),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fan_out_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
