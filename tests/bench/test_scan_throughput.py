"""Benchmark: items/s through the whole nightly scan vs the model alone on the same texts.

Run with `make bench`. Writes bench/results/scan_throughput.json. The workload is real
abstracts that mention a watched product, so every item pays the model path; the flow runs on
a fresh lake and vector store, after the Prefect API and the model are warm, in this process.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import polars as pl
import pytest

from flows.nightly_literature_scan import nightly_literature_scan
from models.embedder import default_embedder
from tasks.services.embedding import texts_of
from tasks.services.runtime import Runtime
from tasks.settings import load_settings
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
ITEMS = int(os.environ.get("PHARMALANE_BENCH_ITEMS", "1000"))


@pytest.mark.bench
@pytest.mark.timeout(3600)  # a benchmark runs for minutes; an hour means it hangs
@pytest.mark.usefixtures("tmp_path_allowed")
def test_scan_throughput_vs_raw_model(tmp_path, monkeypatch):
    records = real_medline_records(20788)
    wanted = pmids_mentioning_products(records, tmp_path)
    chosen = [r for r in records if pmid_of(r) in wanted and b"<AbstractText" in r][:ITEMS]
    source = write_medline(tmp_path / "bench.xml", chosen)

    monkeypatch.setenv("PHARMALANE_HOME", str(tmp_path / "warmup"))
    nightly_literature_scan(sources=[str(write_medline(tmp_path / "w.xml", chosen[:3]))])

    from tasks.io.medline import read_medline

    citations, _ = read_medline(source)
    frame = citations.filter(pl.col("abstract").is_not_null())
    texts = texts_of(frame)
    model, calibrated = default_embedder(), Runtime.for_settings(load_settings()).scorer()
    settings = load_settings()
    start = time.perf_counter()
    model.count_tokens(texts)
    probabilities = calibrated.probabilities(
        model.embed(texts, batch_size=settings.scan.embed_batch_size)
    )
    raw_seconds = time.perf_counter() - start
    assert len(probabilities) == len(texts)

    monkeypatch.setenv("PHARMALANE_HOME", str(tmp_path / "home"))
    start = time.perf_counter()
    summary = nightly_literature_scan(sources=[str(source)])
    flow_seconds = time.perf_counter() - start
    assert summary.embedded == len(texts)

    raw_rate, flow_rate = len(texts) / raw_seconds, summary.embedded / flow_seconds
    result = {
        "items": len(texts),
        "raw_model_items_per_s": round(raw_rate, 2),
        "flow_items_per_s": round(flow_rate, 2),
        "flow_over_raw": round(flow_rate / raw_rate, 3),
        "target_flow_over_raw": 0.85,
        "raw_seconds": round(raw_seconds, 2),
        "flow_seconds": round(flow_seconds, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "chunk_size": settings.scan.chunk_size,
        "embed_batch_size": settings.scan.embed_batch_size,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scan_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
