"""A real intake server in a subprocess (uvicorn on loopback), for restart tests and benchmarks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tasks.services.triage_access import hash_key

REPO = Path(__file__).resolve().parents[1]
SALT = "server-test-salt"
SUBMITTER_KEY = "submitter-secret"
SUBMITTER_ID = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, port: int, **settings: str) -> subprocess.Popen[bytes]:
    """`pharmalane serve` over ``home``; returns once /healthz answers (or raises)."""
    keys = [{"key_id": SUBMITTER_ID, "sha256": hash_key(SALT, SUBMITTER_KEY), "role": "submitter"}]
    env = (
        os.environ
        | {
            "PHARMALANE_HOME": str(home),
            "PHARMALANE_TRIAGE__KEY_SALT": SALT,
            "PHARMALANE_TRIAGE__API_KEYS": json.dumps(keys),
            "PHARMALANE_TRIAGE__RATE_PER_MINUTE": "1000000",
        }
        | {f"PHARMALANE_TRIAGE__{k.upper()}": v for k, v in settings.items()}
    )
    cmd = [sys.executable, "-c", "from flows.cli import app; app()", "serve", "--port", str(port)]
    with (home.parent / f"server-{port}.log").open("wb") as log:  # the child keeps its own fd
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not answer /healthz within 120 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)
