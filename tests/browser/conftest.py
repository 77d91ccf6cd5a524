"""A real Prefect server with its UI on loopback, behind basic auth, and Debian's Chromium.

The browser tests live here, outside tests/flows, so that folder's session-wide
``prefect_test_harness`` is not active: clients in this package talk to the server started
below. Chromium comes from Debian (`.ci/run` installs it; `apt-get install -y chromium` by
hand); playwright-core, pinned in package-lock.json, only drives it and is installed here with
``npm ci`` on first use. Without Chromium the tests FAIL; set PHARMALANE_SKIP_BROWSER=1 to skip
them on a machine that cannot have it.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from prefect.utilities.asyncutils import run_coro_as_sync

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHROMIUM = Path(os.environ.get("PHARMALANE_CHROMIUM", "/usr/bin/chromium"))
SKIP_ENV = "PHARMALANE_SKIP_BROWSER"
STARTUP_S = 120.0


@dataclass(frozen=True)
class PrefectUI:
    """A running Prefect server: where its UI is, how to log in, the env a client needs."""

    url: str
    auth: str
    home: Path
    log: Path

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def client_env(self) -> dict[str, str]:
        """The environment of a process that talks to this server (a runner, the CLI)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env |= {
            "PREFECT_HOME": str(self.home / "client"),  # result storage, never ~/.prefect
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_AUTH_STRING": self.auth,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # a served flow picks a resumed run up at once
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": str(REPO),
        }
        return env


@pytest.fixture(scope="session")
def browser_driver() -> Path:
    """The node script that drives Chromium, with playwright-core installed beside it."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: browser tests skipped on this machine")
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (`apt-get install -y chromium`, "
            f"as .ci/run does) or set {SKIP_ENV}=1 to skip the browser tests locally"
        )
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm not found: install Node.js 20 and npm, or set {SKIP_ENV}=1")
    # under pytest-xdist each worker asks; the lock makes one install and the others wait
    with (HERE / ".npm-install.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (HERE / "node_modules" / "playwright-core" / "package.json").exists():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=HERE, check=True, timeout=300, capture_output=True,
            )  # fmt: skip
    return HERE / "resume_form.mjs"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_env(home: Path, port: int, auth: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        # SQLite's busy wait: a loaded 2-core machine otherwise answers a resume with 503
        "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
        "PREFECT_UI_ENABLED": "true",
        # the UI's own calls go to this server, not to the default port 4200
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "DO_NOT_TRACK": "1",
    }
    return env


def _wait_healthy(ui: PrefectUI, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_S
    user, password = ui.auth.split(":", 1)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            health = httpx.get(f"{ui.api_url}/health", auth=(user, password), timeout=5)
            if health.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    tail = ui.log.read_text(errors="replace")[-3000:]
    pytest.fail(f"the Prefect server did not become healthy in {STARTUP_S:.0f} s:\n{tail}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def _drain_workers() -> None:
    """Send this process's queued logs and events to the server, as prefect_test_harness does:
    otherwise its log and event workers keep the stopped server's address, and the next
    server's flows (tests/flows) hang on them."""

    async def drain() -> None:
        with contextlib.suppress(RuntimeError):  # the log worker was never started
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        drained = EventsWorker.drain_all()
        if inspect.isawaitable(drained):
            await drained

    run_coro_as_sync(drain())


@pytest.fixture(scope="package")
def prefect_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectUI]:
    """`prefect server start` on a free loopback port: temp home, temp SQLite, basic auth.

    This process's Prefect clients point at it while the package's tests run.
    """
    home = tmp_path_factory.mktemp("prefect-ui")
    port = _free_port()
    ui = PrefectUI(
        url=f"http://127.0.0.1:{port}", auth=f"admin:{secrets.token_urlsafe(12)}",
        home=home, log=home / "server.log",
    )  # fmt: skip
    prefect = Path(sys.executable).with_name("prefect")
    with ui.log.open("wb") as log:
        server = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=_server_env(home, port, ui.auth), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_healthy(ui, server)
        page = httpx.get(ui.url, timeout=10)
        assert page.status_code == 200 and 'id="app"' in page.text, "the UI is not served"
        with temporary_settings({PREFECT_API_URL: ui.api_url, PREFECT_API_AUTH_STRING: ui.auth}):
            yield ui
            _drain_workers()
    finally:
        _stop(server)


@dataclass(frozen=True)
class FormResult:
    """What the browser saw: ``ok`` once every step ran; ``outcome`` of the Submit click.

    ``outcome`` is "submitted" (the form closed: the server took the input), "refused" (the
    form marked a field) or "no answer".
    """

    ok: bool
    outcome: str
    step: str
    error: str
    messages: list[str]
    description: str
    screenshot: str
    http_errors: list[str]

    def explain(self) -> str:
        """An assertion message: where the browser stopped and the page's screenshot."""
        return (
            f"browser stopped at {self.step!r}: {self.error or self.outcome}; "
            f"messages {self.messages}; HTTP errors {self.http_errors}; "
            f"screenshot {self.screenshot}"
        )

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> FormResult:
        return cls(
            ok=bool(report.get("ok")), outcome=str(report.get("outcome", "")),
            step=str(report.get("step", "")), error=str(report.get("error", "")),
            messages=list(report.get("messages", [])),
            description=str(report.get("description", "")),
            screenshot=str(report.get("screenshot", "")),
            http_errors=list(report.get("httpErrors", [])),
        )  # fmt: skip


@pytest.fixture
def resume_in_browser(browser_driver: Path, prefect_ui: PrefectUI, tmp_path: Path):
    """Open a suspended run's page in headless Chromium, fill its Resume form, submit it.

    ``ui`` "v1" is Prefect's classic UI, served at / (where the run links Prefect logs point);
    "v2" is the React UI under /v2, which a browser that chose it opens by default.
    """

    def resume(flow_run_id: str, fields: dict[str, str], ui: str = "v1") -> FormResult:
        request = {
            "ui": ui, "url": prefect_ui.url, "auth": prefect_ui.auth, "flowRunId": flow_run_id,
            "fields": [{"label": label, "value": value} for label, value in fields.items()],
            "screenshot": str(tmp_path / f"form-{flow_run_id}.png"),
        }  # fmt: skip
        done = subprocess.run(
            ["node", str(browser_driver), json.dumps(request)],
            cwd=browser_driver.parent, capture_output=True, text=True, timeout=180,
            env={**os.environ, "PHARMALANE_CHROMIUM": str(CHROMIUM)},
        )  # fmt: skip
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            pytest.fail(f"the browser script failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return FormResult.from_report(json.loads(lines[-1]))

    return resume


@pytest.fixture
def background(prefect_ui: PrefectUI, tmp_path: Path):
    """Start a process that talks to the server (a runner, a worker) for one test; its log."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], env: dict[str, str] | None = None) -> Path:
        log = tmp_path / f"background-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, env={**prefect_ui.client_env(), **(env or {})}, cwd=REPO, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        started.append(process)
        return log

    yield start
    for process in started:
        _stop(process)


@pytest.fixture
def prefect_cli(prefect_ui: PrefectUI):
    """Run the `prefect` CLI against the server from the repo (where prefect.yaml is)."""

    def run(*args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("prefect")), "--no-prompt", *args],
            env={**prefect_ui.client_env(), **(env or {})}, cwd=REPO, capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"prefect {args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done.stdout

    return run
