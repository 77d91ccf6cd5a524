"""The `pharmalane` command line: runs flows in-process with rich progress and tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows import cli_finops, cli_knowledge, cli_ladder, cli_triage
from flows.cli_ladder import ServeOption
from flows.cli_output import console, measures, records
from flows.environment import prefect_defaults

T = TypeVar("T")
app = typer.Typer(
    help="pharmalane: cost-aware AI work for drug safety, on Prefect 3.", no_args_is_help=True
)


class EvalSplit(StrEnum):
    calibration = "calibration"
    test = "test"


def _with_progress(label: str, run: Callable[[], T]) -> T:
    """Run a flow in-process with a rich progress bar fed by the flow's progress hook."""
    from flows.progress import progress_hook

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console()) as progress:
        bar = progress.add_task(label, total=None)
        token = progress_hook.set(
            lambda done, total: progress.update(bar, completed=done, total=total)
        )
        try:
            return run()
        finally:
            progress_hook.reset(token)


@app.command()
def scan(
    since: Annotated[date | None, typer.Option(help="first publication date")] = None,
    until: Annotated[date | None, typer.Option(help="last publication date")] = None,
    all_dates: Annotated[bool, typer.Option("--all", help="every publication date")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="at most N citations")] = None,
    split: Annotated[str, typer.Option(help="all | train | calibration | test")] = "all",
    source: Annotated[list[Path] | None, typer.Option(help="MEDLINE XML file(s)")] = None,
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            help="bundled | pubmed-query (dates are then entry dates) | medline-updates "
            "(every NLM update file after the last one processed; no dates)",
        ),
    ] = "bundled",
) -> None:
    """Run the nightly literature scan now."""
    prefect_defaults(quiet=True)
    from flows.nightly_literature_scan import ScanParams, nightly_literature_scan

    if all_dates and (since or until):
        raise typer.BadParameter("--all excludes --since/--until")
    params = ScanParams.model_validate(
        {
            "source": from_,
            "since": since,
            "until": until,
            "limit": limit,
            "split": split,
            "sources": [str(s) for s in source] if source else None,
        }
    )
    summary = _with_progress("screening", lambda: nightly_literature_scan(**params.model_dump()))
    console().print(measures("nightly-literature-scan", summary.model_dump()))
    console().print(
        f"outputs: {summary.lake}/decisions, escalations, summaries, ledger, quarantine"
    )


@app.command()
def backfill(
    since: Annotated[date, typer.Option(help="first publication date")],
    until: Annotated[date, typer.Option(help="last publication date")],
    workflow: Annotated[str, typer.Option(help="the lane to re-run")] = "nightly-literature-scan",
    days_per_run: Annotated[int, typer.Option(min=1, help="publication days per child run")] = 1,
    split: Annotated[str, typer.Option(help="all | train | calibration | test")] = "all",
    from_: Annotated[
        str, typer.Option("--from", help="bundled | pubmed-query (dates are then entry dates)")
    ] = "bundled",
) -> None:
    """Re-run a lane over a date range: one child run per window, idempotent."""
    prefect_defaults(quiet=True)
    from flows.backfill import BackfillParams
    from flows.backfill import backfill as backfill_flow

    params = BackfillParams.model_validate(
        {
            "source": from_,
            "since": since,
            "until": until,
            "workflow": workflow,
            "days_per_run": days_per_run,
            "split": split,
        }
    )
    summary = _with_progress("backfill", lambda: backfill_flow(**params.model_dump()))
    console().print(measures("backfill", summary.model_dump()))


@app.command()
def train() -> None:
    """Rebuild the small scorer (train + calibration splits; embeddings are reused)."""
    prefect_defaults(quiet=True)
    from flows.train_scorer import train_scorer

    console().print(measures("train-scorer", train_scorer().model_dump()))


@app.command(name="eval")
def evaluate(
    split: Annotated[EvalSplit, typer.Option(help="labelled split")] = EvalSplit.test,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    ladder: Annotated[
        bool,
        typer.Option(
            help="then all-small vs all-large vs cascade (`ladder-eval`): needs the large model "
            "(or its stored verdicts)"
        ),
    ] = False,
    serve: ServeOption = None,
) -> None:
    """Recall, precision and path shares against the MeSH label; written to bench/results/."""
    prefect_defaults(quiet=True)
    from flows.evaluate_scan import evaluate_scan

    metrics = evaluate_scan(split=split.value, limit=limit)
    small, scope = metrics["small_model_all_items"], metrics["in_scope"]
    rows = {
        "items / positives": f"{metrics['items']} / {metrics['positives']}",
        "thresholds low / high": f"{metrics['thresholds']['low']:.4f} / "
        f"{metrics['thresholds']['high']:.4f}",
        "small model recall (all positives, p >= low)": small["recall_at_low"],
        "small model precision at low / high": f"{small['precision_at_low']} / "
        f"{small['precision_at_high']}",
        "in-scope items (share)": f"{scope['items']} ({scope['share_of_items']})",
        "in-scope positives": scope["positives"],
        "in-scope recall (candidate or escalated)": scope["recall"],
        "in-scope path share": scope["path_share"],
        "all-items path share": metrics["cascade_all_items"]["path_share"],
        "cascade recall on all positives": metrics["cascade_all_items"]["recall"],
    }
    console().print(measures(f"evaluate-scan ({split})", rows))
    console().print(f"written: bench/results/eval_{split}.json")
    if ladder:
        cli_ladder.ladder_eval_command(split=split.value, sample=None, serve=serve)


@app.command()
def status() -> None:
    """What is in the lake and the vector store."""
    prefect_defaults(quiet=True)
    from tasks.services import status as service
    from tasks.services.runtime import Runtime
    from tasks.settings import load_settings

    runtime = Runtime.for_settings(load_settings())
    rows = [[d.dataset, str(d.files), str(d.rows)] for d in service.lake_datasets(runtime)]
    console().print(
        records(f"lake at {runtime.settings.lake_location}", ["dataset", "files", "rows"], rows)
    )
    vectors = runtime.settings.vectors_location
    console().print(f"vectors: {service.abstracts_indexed(runtime)} abstracts in {vectors}")


app.add_typer(cli_knowledge.app)  # ask, index
app.add_typer(cli_ladder.app)  # escalate, calibrate, ladder-eval, llm-serve
app.add_typer(cli_finops.app)  # finops, budget, audit
app.add_typer(cli_triage.app)  # serve, triage, review


def main() -> None:  # pragma: no cover
    app()
