"""`pharmalane finops`, `pharmalane audit verify` and `pharmalane budget status`."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

console = Console()
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
budget_app = typer.Typer(help="Budgets and throttles per workflow.", no_args_is_help=True)


def _rich(title: str, frame: pl.DataFrame) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(column, justify="right" if frame[column].dtype.is_numeric() else "left")
    for row in frame.rows():
        table.add_row(*(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
    return table


def finops(
    since: Annotated[date | None, typer.Option(help="first day (UTC); default 7 days back")] = None,
    until: Annotated[date | None, typer.Option(help="last day (UTC); default today")] = None,
    html: Annotated[Path | None, typer.Option(help="also write a self-contained HTML")] = None,
) -> None:
    """Cost per workflow, pattern and outcome, cache savings, top calls, burst alerts."""
    from tasks.core.finops_render import render_charts, render_html
    from tasks.errors import PharmalaneError
    from tasks.io.reports import write_text_atomic
    from tasks.settings import load_settings
    from tasks.steps.finops import finops_report

    last = until or datetime.now(UTC).date()
    first = since or last - timedelta(days=6)
    if first > last:
        raise typer.BadParameter("--since is after --until")
    start = datetime.combine(first, time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC)
    try:
        report = finops_report.fn(load_settings(), start, end)
    except PharmalaneError as exc:
        console.print(f"[red]{type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"FinOps {first} to {last}: ${report.total_usd:.6f} over {report.calls} calls")
    for title, frame in (
        ("cost per workflow", report.by_workflow),
        ("cost per pattern", report.by_pattern),
        ("cost per resolved outcome", report.per_outcome),
        ("cache savings", report.cache_savings),
        ("ten most expensive calls", report.top_calls.drop("created_at", strict=False)),
        ("burst hours", report.bursts),
    ):
        console.print(_rich(title, frame))
    if html is not None:
        write_text_atomic(html, render_html(report, render_charts(report)))
        console.print(f"report: {html}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check chain, MACs, head and anchors; exit 1 naming what was altered, cut or deleted."""
    from tasks.errors import ConfigError
    from tasks.settings import load_settings
    from tasks.steps.audit import verify

    try:
        check = verify(load_settings())
    except ConfigError as exc:
        console.print(f"[red]ConfigError: {exc}[/red]")
        raise typer.Exit(2) from exc
    result = check.verification
    if result.ok:
        console.print(
            f"audit trail intact: {result.entries} entries in {check.trail}, "
            f"{check.anchors} anchors hold"
        )
        return
    console.print(
        f"[red]audit trail BROKEN at entry {result.first_bad}: {result.problem}[/red] "
        f"({result.entries} entries verified, {check.trail})"
    )
    raise typer.Exit(1)


@budget_app.command("status")
def budget_status() -> None:
    """Spend, holds, urgent overrides, overages and headroom of every budget this period.

    Exits 1 when any budget went over its limit (overrides or overages): finance must look.
    """
    from tasks.rules import load_budgets
    from tasks.settings import load_settings
    from tasks.steps import resources

    settings = load_settings()
    store, now = resources.budgets(settings), datetime.now(UTC)
    table = Table(title=f"budgets at {now:%Y-%m-%d %H:%M} UTC")
    columns = ("workflow", "period", "limit", "settled", "reserved", "lapsed", "override",
               "overage", "remaining", "on exhaustion")  # fmt: skip
    for column in columns:
        table.add_column(column)
    over = []
    for budget in load_budgets(settings).budgets:
        spend = store.spend(budget, now)
        if spend.overrides or spend.overages:
            over.append(budget.workflow)
        table.add_row(
            budget.workflow,
            f"{budget.period} from {spend.period_start:%Y-%m-%d}",
            f"${budget.usd:.2f}",
            f"${spend.settled_usd:.6f}",
            f"${spend.reserved_usd:.6f} ({spend.open_reservations})",
            f"${spend.lapsed_usd:.6f} ({spend.lapsed_reservations})",
            f"${spend.override_usd:.6f} ({spend.overrides})",
            f"${spend.overage_usd:.6f} ({spend.overages})",
            f"${spend.remaining_usd:.6f}",
            budget.on_exhaustion,
        )
    console.print(table)
    if over:
        console.print(
            f"[red]ALERT[/red] spend past the limit this period (urgent overrides or overages; "
            f"see the audit trail's budget_exhausted / budget_overage entries): {', '.join(over)}"
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(finops)
    app.add_typer(audit_app, name="audit")
    app.add_typer(budget_app, name="budget")
