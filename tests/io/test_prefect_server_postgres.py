"""Prefect's own server on PostgreSQL, as in production: `prefect server start` with
``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...`` against the test cluster.

A flow and a flow run are created over the REST API and read back, then found in PostgreSQL's
own ``flow_run`` table: the server's state lives in PostgreSQL, not in a SQLite file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(api: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after 180 s: {log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_prefect_server_keeps_its_runs_in_postgresql(postgres_url, tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = os.environ | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres_url.replace(
            "postgresql://", "postgresql+asyncpg://", 1
        ),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_URL": api,
    }
    log = tmp_path / "server.log"
    prefect = Path(sys.executable).with_name("prefect")
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(api, server, log)
        flow = httpx.post(f"{api}/flows/", json={"name": "pg-check"}, timeout=30).json()
        run = httpx.post(
            f"{api}/flow_runs/",
            json={"flow_id": flow["id"], "name": "on-postgres"},
            timeout=30,
        ).json()
        read = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=30).json()
        assert (read["name"], read["flow_id"]) == ("on-postgres", flow["id"])
    finally:
        server.terminate()
        server.wait(timeout=60)
    with psycopg.connect(postgres_url) as con:
        row = con.execute("SELECT name FROM flow_run WHERE id = %s", (run["id"],)).fetchone()
    assert row == ("on-postgres",)
