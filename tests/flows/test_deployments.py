"""An ad-hoc run started through the server's API, as the UI does, is picked up and completes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from tasks.io.lake import Lake
from tests.conftest import real_medline_records, write_medline

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _run(args: list[str], env: dict[str, str], timeout: float = 240) -> str:
    done = subprocess.run(
        [PREFECT, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_ad_hoc_run_through_the_api_is_executed_by_a_process_worker(tmp_path):
    source = write_medline(tmp_path / "adhoc.xml", real_medline_records(12))
    home = tmp_path / "home"
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PHARMALANE_REPO": str(REPO),
        "PHARMALANE_HOME": str(home),
    }
    _run(["work-pool", "create", "batch", "--type", "process", "--overwrite"], env)
    _run(["--no-prompt", "deploy", "--name", "nightly"], env)

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("nightly-literature-scan/nightly")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"sources": [str(source)]}
        )
    _run(["worker", "start", "--pool", "batch", "--run-once"], env, timeout=300)

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state is not None and state.is_completed(), state
    assert Lake(home / "lake").read("decisions").height > 0


def test_a_parameter_that_breaks_the_schema_is_refused_by_the_server(tmp_path):
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PHARMALANE_REPO": str(REPO),
    }
    _run(["work-pool", "create", "batch", "--type", "process", "--overwrite"], env)
    _run(["--no-prompt", "deploy", "--name", "backfill"], env)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("backfill/backfill")
        with pytest.raises(Exception, match=r"(?i)valid"):
            client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"since": "2021-01-01", "until": "2021-01-02", "days_per_run": 0},
            )
