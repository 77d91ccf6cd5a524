"""The scan and `pharmalane finops` with the lake and the vectors on a local S3 server (moto).

One small real slice (in-scope abstracts of the test split and out-of-scope ones, 8 items a
chunk) is scanned twice: with everything under PHARMALANE_HOME, then with PHARMALANE_LAKE_URI
pointing at a bucket. Decisions, escalations, the ledger, the digest, the vectors and the
FinOps report must be the same; the second home must hold no lake and no vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from flows.cli import app
from flows.nightly_literature_scan import nightly_literature_scan
from tasks.core.labels import split_of
from tasks.io.lake import LakeStore
from tasks.io.object_lake import ObjectLake
from tasks.io.storage import open_lake, vectors_location
from tasks.io.vectors import VectorStore
from tasks.services.runtime import Runtime
from tasks.services.status import DatasetCount, lake_datasets
from tasks.settings import load_settings
from tests.conftest import pmid_of, pmids_mentioning_products, real_medline_records, write_medline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
KEY = ["item_id", "content_hash"]
COMPARED = [*KEY, "path", "decision", "route", "model", "chunk_id"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("s3_scan")
    records = [r for r in real_medline_records(9000, skip=2000) if _in_test_split(r)]
    in_scope = pmids_mentioning_products(records, folder)
    chosen = [r for r in records if pmid_of(r) in in_scope and b"<AbstractText" in r][:32]
    others = [r for r in records if pmid_of(r) not in in_scope][:16]
    return write_medline(folder / "night.xml", chosen + others)


def _in_test_split(record: bytes) -> bool:
    return pl.select(split_of(pl.lit(pmid_of(record)))).item() == "test"


def _scan(source: Path, home: Path, base: Path, patch: pytest.MonkeyPatch) -> None:
    patch.setenv("PHARMALANE_HOME", str(home))
    patch.setenv("PHARMALANE_SCAN__CHUNK_SIZE", "8")
    patch.setenv("PHARMALANE_PATHS__ALLOWED_INPUT_ROOTS", json.dumps([str(base)]))
    nightly_literature_scan(sources=[str(source)])


def _outputs(lake: LakeStore) -> dict[str, pl.DataFrame]:
    return {
        "decisions": lake.read("decisions").sort(KEY),
        "escalations": lake.read("escalations").sort(KEY),
        "ledger": lake.read("ledger").sort("call_id"),
        "digest": lake.read("summaries/product_digest").sort("pub_date", "product"),
    }


def _finops() -> str:
    result = CliRunner().invoke(app, ["finops"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _status() -> list[DatasetCount]:
    """`pharmalane status`'s datasets: name, files, rows."""
    return lake_datasets(Runtime.for_settings(load_settings()))


@pytest.fixture(scope="module")
def on_disk(source, tmp_path_factory) -> tuple[dict[str, pl.DataFrame], int, str, object]:
    home = tmp_path_factory.mktemp("disk")
    with pytest.MonkeyPatch.context() as patch:
        _scan(source, home, tmp_path_factory.getbasetemp(), patch)
        settings = load_settings()
        vectors = VectorStore(vectors_location(settings)).count()
        return _outputs(open_lake(settings)), vectors, _finops(), _status()


def test_the_scan_and_finops_on_s3_give_the_results_on_disk(
    source, on_disk, s3_env, tmp_path, tmp_path_factory, monkeypatch
):
    want, want_vectors, want_report, want_status = on_disk
    home = tmp_path / "home"
    _scan(source, home, tmp_path_factory.getbasetemp(), monkeypatch)
    settings = load_settings()
    lake = open_lake(settings)
    assert isinstance(lake, ObjectLake)
    got = _outputs(lake)

    assert got["decisions"].height == want["decisions"].height >= 40
    assert_frame_equal(got["decisions"].select(COMPARED), want["decisions"].select(COMPARED))
    assert_frame_equal(
        got["decisions"].select("probability", "cost_usd"),
        want["decisions"].select("probability", "cost_usd"),
        abs_tol=1e-6,
    )
    assert_frame_equal(got["escalations"].select(KEY), want["escalations"].select(KEY))
    ledger = ["call_id", "chunk_id", "n_items", "input_tokens", "cost_usd"]
    assert_frame_equal(got["ledger"].select(ledger), want["ledger"].select(ledger))
    assert_frame_equal(
        got["digest"].drop("refreshed_at", "cost_usd", "max_probability"),
        want["digest"].drop("refreshed_at", "cost_usd", "max_probability"),
    )
    assert VectorStore(vectors_location(settings)).count() == want_vectors > 0
    assert "over 0 calls" not in want_report
    assert _finops() == want_report
    assert _status() == want_status
    again = nightly_literature_scan(sources=[str(source)])  # a re-run adds and pays nothing
    assert (again.screened, again.already_decided) == (0, want["decisions"].height)
    assert open_lake(settings).read("ledger").height == want["ledger"].height
    assert not (home / "lake").exists()
    assert not (home / "vectors").exists()
    assert (home / "lake-index").is_dir()  # the key indexes stay local
