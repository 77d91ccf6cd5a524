"""The `pharmalane` command line: runs flows in-process with rich progress and tables."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.cli_ladder import app as ladder_app

REPO = Path(__file__).resolve().parents[1]
app = typer.Typer(
    help="pharmalane: cost-aware AI work for drug safety, on Prefect 3.", no_args_is_help=True
)
console = Console()


def _prefect_defaults() -> None:
    """Embedded Prefect with its state inside the repo, no telemetry, no network."""
    os.environ.setdefault("PREFECT_HOME", str(REPO / ".prefect"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table


@app.command()
def scan(
    since: Annotated[date | None, typer.Option(help="first publication date")] = None,
    until: Annotated[date | None, typer.Option(help="last publication date")] = None,
    all_dates: Annotated[bool, typer.Option("--all", help="every publication date")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="at most N citations")] = None,
    split: Annotated[str, typer.Option(help="all | train | calibration | test")] = "all",
    source: Annotated[list[Path] | None, typer.Option(help="MEDLINE XML file(s)")] = None,
) -> None:
    """Run the nightly literature scan now."""
    _prefect_defaults()
    from flows.nightly_literature_scan import ScanParams, nightly_literature_scan
    from flows.progress import progress_hook

    if all_dates and (since or until):
        raise typer.BadParameter("--all excludes --since/--until")
    params = ScanParams(
        since=since,
        until=until,
        limit=limit,
        split=split,
        sources=[str(s) for s in source] if source else None,
    )
    columns = (TextColumn("screening"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("scan", total=None)
        token = progress_hook.set(
            lambda done, total: progress.update(bar, completed=done, total=total)
        )
        try:
            summary = nightly_literature_scan(params)
        finally:
            progress_hook.reset(token)
    console.print(_table("nightly-literature-scan", summary.model_dump()))
    console.print(f"outputs: {summary.lake}/decisions, escalations, summaries, ledger, quarantine")


@app.command()
def train() -> None:
    """Rebuild the small scorer (train + calibration splits; embeddings are reused)."""
    _prefect_defaults()
    from flows.train_scorer import train_scorer

    console.print(_table("train-scorer", train_scorer().model_dump()))


@app.command()
def status() -> None:
    """What is in the lake and the vector store."""
    _prefect_defaults()
    from tasks.io.lake import Lake
    from tasks.io.vectors import VectorStore
    from tasks.settings import load_settings

    settings = load_settings()
    lake = Lake(settings.lake_dir)
    table = Table(title=f"lake at {settings.lake_dir}")
    for col in ("dataset", "files", "rows"):
        table.add_column(col, justify="right" if col != "dataset" else "left")
    datasets = (
        sorted({p.parent.relative_to(lake.root).parts[0] for p in lake.root.rglob("*.parquet")})
        if lake.root.is_dir()
        else []
    )
    for name in datasets:
        files = lake.files(name)
        rows = lake.query(f'SELECT count(*) AS n FROM "{name}"')["n"][0]  # noqa: S608
        table.add_row(name, str(len(files)), str(rows))
    console.print(table)
    console.print(
        f"vectors: {VectorStore(settings.vectors_dir).count()} abstracts in {settings.vectors_dir}"
    )


app.registered_commands.extend(ladder_app.registered_commands)  # escalate, calibrate, ladder-eval


def main() -> None:  # pragma: no cover
    app()
