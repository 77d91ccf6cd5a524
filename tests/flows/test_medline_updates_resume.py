"""A nightly medline-updates run SIGKILLed mid-download resumes the file: no gap, no duplicate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from flows.nightly_literature_scan import nightly_literature_scan
from tasks.io.lake import Lake
from tasks.services import update_files
from tasks.settings import load_settings
from tests.conftest import pmid_of, real_medline_records
from tests.ncbi_server import NcbiState, ncbi_server, update_files_url

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
NAME = "pubmed25n1301.xml.gz"


def test_a_run_killed_mid_download_resumes_the_file_where_it_stopped(isolated_home, monkeypatch):
    records = real_medline_records(150)
    state = NcbiState(file_delay_s=0.2)  # ~25 pieces of 16 KiB: seconds to land a kill
    with ncbi_server(state) as (url, state):
        data = state.add_update_file(NAME, records)
        env = {
            **os.environ,
            "PHARMALANE_HOME": str(isolated_home),
            "PHARMALANE_MEDLINE_UPDATES__BASE_URL": update_files_url(url),
            "PHARMALANE_MEDLINE_UPDATES__START_FROM": NAME,
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from flows.cli import app; app()",
                "scan",
                "--from",
                "medline-updates",
            ],
            cwd=REPO,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while state.bytes_sent.get(NAME, 0) < len(data) // 3 and time.monotonic() < deadline:
            assert process.poll() is None, "the scan ended before it could be killed"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        part = isolated_home / "literature" / "updatefiles" / f"{NAME}.part"
        kept = part.stat().st_size
        assert 0 < kept < len(data)  # killed mid-file, the bytes it had are on disk
        assert not (isolated_home / "lake" / "decisions").exists()
        assert update_files.watermark(load_settings()) is None
        before = len(state.requests)

        state.file_delay_s = 0.0
        monkeypatch.setenv("PHARMALANE_MEDLINE_UPDATES__BASE_URL", update_files_url(url))
        monkeypatch.setenv("PHARMALANE_MEDLINE_UPDATES__START_FROM", NAME)
        resumed = nightly_literature_scan(source="medline-updates")

        ranges = [r.form["range"] for r in state.requests[before:] if r.endpoint == NAME]
    assert ranges == [f"bytes={kept}-"]  # only the missing tail was asked for
    assert resumed.update_files == [NAME]
    assert update_files.watermark(load_settings()) == NAME
    lake = Lake(isolated_home / "lake")
    decided, quarantined = lake.read("decisions"), lake.read("quarantine")
    handled = set(decided["item_id"]) | (
        set(quarantined["record_key"]) if not quarantined.is_empty() else set()
    )
    assert handled == {pmid_of(r) for r in records}  # no gap
    assert decided["item_id"].n_unique() == decided.height  # no duplicate
    assert resumed.rows_in == len(records)
