"""CLI of the urgent AE triage lane: `serve`, `triage submit|replay|hash-key|lane`, `review`.

API keys for the client commands come from ``PHARMALANE_API_KEY`` (never a flag, so they stay
out of shell history); the server's salt from ``PHARMALANE_TRIAGE__KEY_SALT``. `review
accept|reject|code` checks the reviewer's key against ``triage.api_keys`` like the HTTP app does
and records the key id, not a typed name; `review code` hands out the one-time code the Prefect
UI's review form asks for.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from flows.cli_output import console, errors, measures, records
from flows.environment import prefect_defaults

if TYPE_CHECKING:
    from tasks.io.triage_store import TriageCases
    from tasks.services.runtime import Runtime
    from tasks.settings import ApiKey, Settings

app = typer.Typer()
triage_app = typer.Typer(help="Urgent AE triage: submit and replay cases.", no_args_is_help=True)
review_app = typer.Typer(
    help="The review inbox: literature case candidates and held triage cases.", no_args_is_help=True
)
app.add_typer(triage_app, name="triage")
app.add_typer(review_app, name="review")

Url = Annotated[str, typer.Option(help="intake service base URL")]
DEFAULT_URL = "http://127.0.0.1:8711"


def _api_key() -> str:
    key = os.environ.get("PHARMALANE_API_KEY")
    if not key:
        raise typer.BadParameter("set PHARMALANE_API_KEY to a submitter key")
    return key


def _pem(help_text: str, envvar: str) -> Any:
    return typer.Option(exists=True, dir_okay=False, readable=True, envvar=envvar, help=help_text)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="loopback by default")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8711,
    tls_cert: Annotated[
        Path | None, _pem("PEM certificate (chain): serve HTTPS", "PHARMALANE_TLS_CERT")
    ] = None,
    tls_key: Annotated[
        Path | None, _pem("PEM private key of --tls-cert", "PHARMALANE_TLS_KEY")
    ] = None,
    insecure_no_tls: Annotated[
        bool,
        typer.Option(
            "--insecure-no-tls",
            help="serve plain HTTP on a non-loopback address (only behind a TLS proxy)",
        ),
    ] = False,
) -> None:
    """Run the intake service (FastAPI; OpenAPI docs at /docs); HTTPS with --tls-cert/--tls-key.

    Off loopback it refuses plain HTTP unless --insecure-no-tls is given.
    """
    from tasks.policy.transport import plain_http_refusal

    refusal = plain_http_refusal(
        host, cert=tls_cert is not None, key=tls_key is not None, insecure_no_tls=insecure_no_tls
    )
    if refusal:
        errors().print(f"[red]{refusal}[/red]")
        raise typer.Exit(2)
    import uvicorn

    from flows.triage_app import create_app
    from tasks.settings import load_settings

    app = create_app(load_settings())
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
    )


@triage_app.command()
def submit(file: Path, url: Url = DEFAULT_URL) -> None:
    """POST one case (a JSON file) and print the decision."""
    import httpx

    body = json.loads(file.read_text(encoding="utf-8"))
    response = httpx.post(f"{url}/cases", json=body, headers={"X-API-Key": _api_key()}, timeout=30)
    console().print_json(response.text)
    if response.status_code != 200:
        raise typer.Exit(1)


@triage_app.command()
def replay(
    rate: Annotated[float, typer.Option(min=0.01, help="cases per second")] = 5.0,
    seconds: Annotated[float, typer.Option(min=1, help="stop after this long")] = 30.0,
    url: Url = DEFAULT_URL,
) -> None:
    """Replay the packaged feed (CDISC pilot AEs + Drugs.com reviews) at a steady rate."""
    from tasks.io.ae_feed import replay_feed
    from tasks.io.replay import replay as run

    cases, rejected = replay_feed()
    if rejected:
        console().print(f"{len(rejected)} source rows are not cases (first: {rejected[0]})")
    result = run(url, _api_key(), cases, rate=rate, max_seconds=seconds)
    shown = {k: f"{v:.3f}" if isinstance(v, float) else v for k, v in result.summary().items()}
    console().print(measures(f"replay at {rate}/s", shown))


@triage_app.command("hash-key")
def hash_key_cmd() -> None:
    """Print sha256(salt + key) for configs: the key is read hidden, the salt from the env.

    Only the hash goes to stdout (the prompt goes to stderr), so `$(pharmalane triage
    hash-key)` captures exactly the value to store.
    """
    from tasks.services.triage_access import hash_key

    salt = os.environ.get("PHARMALANE_TRIAGE__KEY_SALT")
    if not salt:
        raise typer.BadParameter("set PHARMALANE_TRIAGE__KEY_SALT first")
    typer.echo(hash_key(salt, typer.prompt("API key", hide_input=True, err=True)))


@triage_app.command("new-key")
def new_key_cmd() -> None:
    """Print a fresh data key: put it first in PHARMALANE_DATA_KEYS, then run rotate-key."""
    from tasks.io.sealing import new_key

    console().print(new_key(), highlight=False, soft_wrap=True)


@triage_app.command("rotate-key")
def rotate_key() -> None:
    """Re-seal every stored case with the first key of PHARMALANE_DATA_KEYS.

    Afterwards the older keys open nothing in the store and can be dropped from the list.
    """
    from tasks.errors import PharmalaneError

    try:
        store = _store()
        result = store.reseal()
    except PharmalaneError as exc:
        console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console().print(
        f"{result.resealed} case(s) resealed with data key {store.sealer.primary_id}, "
        f"{result.already_current} already were: older keys can be removed"
    )


@triage_app.command()
def lane(
    idle_stop_seconds: Annotated[float, typer.Option(min=0)] = 60.0,
) -> None:
    """Run the `urgent-ae-triage` lane in-process until it has been idle that long."""
    prefect_defaults(quiet=True)
    from flows.urgent_ae_triage import urgent_ae_triage
    from tasks.io.orchestrator import ensure_global_limit
    from tasks.services.triage import WORKFLOW

    # the lane acquires its limit strictly; `make ui` creates it on a server, this in-process
    ensure_global_limit(WORKFLOW)
    console().print(urgent_ae_triage(idle_stop_seconds=idle_stop_seconds).model_dump())


def _store() -> TriageCases:
    from tasks.services.runtime import Runtime
    from tasks.settings import load_settings

    return Runtime.for_settings(load_settings()).triage_store


def _runtime_and_reviewer() -> tuple[Runtime, str]:
    from tasks.services.runtime import Runtime
    from tasks.settings import load_settings

    settings = load_settings()
    reviewer = _reviewer_key_id(settings)
    return Runtime.for_settings(settings), reviewer


@review_app.command("list")
def review_list() -> None:
    """Open items of the review inbox (literature and triage), earliest due date first."""
    from tasks.services import inbox

    runtime, _ = _runtime_and_reviewer()
    columns = ["item", "reason", "day 0", "clock", "due", "prio"]
    rows = [
        [
            i.item_id,
            i.reason,
            str(i.day_zero),
            f"{i.clock_days} d",
            str(i.due_date),
            str(i.priority),
        ]
        for i in inbox.open_items(runtime)
    ]
    console().print(records("review inbox: open items", columns, rows))


@review_app.command("show")
def review_show(item: str) -> None:
    """One item with its evidence (abstract or case, verdicts, reason codes) as JSON."""
    from dataclasses import asdict

    from tasks.errors import DataContractError
    from tasks.services import inbox

    runtime, _ = _runtime_and_reviewer()
    try:
        found = inbox.find(runtime, item)
    except DataContractError as exc:
        _refuse(str(exc))
    console().print_json(json.dumps(asdict(found), default=str))


def _reviewer_key_id(settings: Settings) -> str:
    """Authenticate the reviewer as the HTTP app does; the key id is the reviewer of record."""
    return _reviewer_key(settings).key_id


def _reviewer_key(settings: Settings) -> ApiKey:
    """The reviewer's configured key, authenticated as the HTTP app does.

    The key comes from ``PHARMALANE_API_KEY`` or a hidden prompt, never a flag (``ps`` and the
    shell history would show it). Unknown, revoked or non-reviewer keys exit 1.
    """
    from tasks.services.triage_access import lookup_key

    if settings.triage.key_salt is None:
        _refuse("set PHARMALANE_TRIAGE__KEY_SALT: API keys are hashed with it")
    presented = os.environ.get("PHARMALANE_API_KEY") or typer.prompt(
        "reviewer API key", hide_input=True, default="", show_default=False
    )
    if not presented:
        _refuse("a review needs a reviewer API key: set PHARMALANE_API_KEY or type it")
    salt = settings.triage.key_salt.get_secret_value()
    key = lookup_key(settings.triage.api_keys, salt, presented)
    if key is None:
        _refuse("unknown API key: nothing recorded")
    if key.revoked:
        _refuse(f"API key {key.key_id} is revoked: nothing recorded")
    if key.role != "reviewer":
        _refuse(f"API key {key.key_id} has role {key.role}; a review needs a reviewer key")
    return key


def _refuse(message: str) -> NoReturn:
    console().print(f"[red]{message}[/red]")
    raise typer.Exit(1)


def _verdict(item: str, verdict: str, reason: str) -> None:
    from tasks.errors import DataContractError
    from tasks.services import inbox

    runtime, reviewer = _runtime_and_reviewer()
    try:
        resolved = inbox.resolve(
            runtime, item, verdict=verdict, reviewer=reviewer, reason=reason, at=datetime.now(UTC)
        )
    except DataContractError as exc:  # AlreadyResolved included: nothing changed
        _refuse(str(exc))
    console().print(f"{resolved.item_id}: {resolved.outcome} by {reviewer}")


@review_app.command("code")
def review_code(item: str) -> None:
    """A one-time review code for ITEM's form in the Prefect UI (review.code_ttl_minutes)."""
    from tasks.errors import DataContractError
    from tasks.services import review_codes
    from tasks.services.runtime import Runtime
    from tasks.settings import load_settings

    settings = load_settings()
    key = _reviewer_key(settings)
    try:
        issued = review_codes.issue_code(
            Runtime.for_settings(settings), item, key, now=datetime.now(UTC)
        )
    except DataContractError as exc:  # unknown item, or already resolved
        _refuse(str(exc))
    console().print(
        f"review code for {issued.item_id}: {issued.code} "
        f"(once, until {issued.expires_at:%H:%M} UTC; as {issued.key_id})"
    )


@review_app.command("export")
def review_export(folder: Path) -> None:
    """Confirmed literature ICSRs as confirmed-cases.json and .csv (0600), for the safety DB."""
    from tasks.services import inbox

    runtime, _ = _runtime_and_reviewer()
    json_path, csv_path, count = inbox.export_confirmed(runtime, folder)
    console().print(f"{count} confirmed cases: {json_path}, {csv_path}")


Reason = Annotated[str, typer.Option(help="the reason of record (audit trail)")]


@review_app.command()
def accept(item: str, reason: Reason) -> None:
    """Accept an item (literature: a confirmed ICSR) as the reviewer of PHARMALANE_API_KEY."""
    _verdict(item, "accept", reason)


@review_app.command()
def reject(item: str, reason: Reason) -> None:
    """Reject an item (literature: not an ICSR) as the reviewer of PHARMALANE_API_KEY."""
    _verdict(item, "reject", reason)


@review_app.command()
def changes(item: str, reason: Reason) -> None:
    """Send a periodic-summary draft back for changes, as the reviewer of PHARMALANE_API_KEY."""
    _verdict(item, "changes", reason)
