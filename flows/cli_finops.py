"""`pharmalane finops`, `pharmalane budget status` and `pharmalane audit verify`: the money and
the record of the Supervisor and FinOps stages."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_output import console, frame, records

app = typer.Typer()
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
budget_app = typer.Typer(help="Budgets and throttles per workflow.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(budget_app, name="budget")


@app.command()
def finops(
    since: Annotated[date | None, typer.Option(help="first day (UTC); default 7 days back")] = None,
    until: Annotated[date | None, typer.Option(help="last day (UTC); default today")] = None,
    html: Annotated[Path | None, typer.Option(help="also write a self-contained HTML")] = None,
) -> None:
    """Cost per workflow, pattern and outcome, cache savings, top calls, burst alerts."""
    from tasks.core.finops_render import usd
    from tasks.errors import PharmalaneError
    from tasks.services import finops as service
    from tasks.services.runtime import Runtime
    from tasks.settings import load_settings

    last = until or datetime.now(UTC).date()
    period = service.Period(since or last - timedelta(days=6), last)
    if period.first > period.last:
        raise typer.BadParameter("--since is after --until")
    try:
        report = service.report(Runtime.for_settings(load_settings()), period.start, period.end)
    except PharmalaneError as exc:
        console().print(f"[red]{type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(2) from exc
    console().print(
        f"FinOps {period.first} to {period.last}: {usd(report.total_usd)} over {report.calls} calls"
    )
    for title, data in (
        ("cost per workflow", report.by_workflow),
        ("cost per pattern", report.by_pattern),
        ("cost per resolved outcome (attributed model cost + review)", report.resolved_outcomes),
        ("workflow spend per machine decision", report.per_outcome),
        ("cache savings", report.cache_savings),
        ("persona panel: cost per item and effect on the inbox", report.panel),
        ("grounded-answer rate per day, tier and model (ask)", report.grounding),
        ("ALERT days with a grounded-answer rate below the bound", report.grounding_alerts),
        ("periodic-summary drafts: cost per accepted summary", report.drafting),
        ("ten most expensive calls", report.top_calls.drop("created_at", strict=False)),
        ("burst hours", report.bursts),
    ):
        console().print(frame(title, data))
    if html is not None:
        service.write_html(report, html)
        console().print(f"report: {html}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check chain, MACs, head and anchors; exit 1 naming what was altered, cut or deleted."""
    from tasks.errors import ConfigError
    from tasks.services.audit import verify
    from tasks.services.runtime import Runtime
    from tasks.settings import load_settings

    try:
        check = verify(Runtime.for_settings(load_settings()))
    except ConfigError as exc:
        console().print(f"[red]ConfigError: {exc}[/red]")
        raise typer.Exit(2) from exc
    result = check.verification
    if result.ok:
        console().print(
            f"audit trail intact: {result.entries} entries in {check.trail}, "
            f"{check.anchors} anchors hold"
        )
        return
    console().print(
        f"[red]audit trail BROKEN at entry {result.first_bad}: {result.problem}[/red] "
        f"({result.entries} entries verified, {check.trail})"
    )
    raise typer.Exit(1)


@budget_app.command("status")
def budget_status() -> None:
    """Spend, holds, urgent overrides, overages and headroom of every budget this period.

    Exits 1 when any budget went over its limit (overrides or overages): finance must look.
    """
    from tasks.services.runtime import Runtime
    from tasks.settings import load_settings

    runtime, now = Runtime.for_settings(load_settings()), datetime.now(UTC)
    columns = [
        "workflow",
        "period",
        "limit",
        "settled",
        "reserved",
        "lapsed",
        "override",
        "overage",
        "remaining",
        "on exhaustion",
    ]
    rows, over = [], []
    for budget in runtime.rules.budgets.budgets:
        spend = runtime.budgets.spend(budget, now)
        if spend.overrides or spend.overages:
            over.append(budget.workflow)
        rows.append(
            [
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
            ]
        )
    console().print(records(f"budgets at {now:%Y-%m-%d %H:%M} UTC", columns, rows))
    if over:
        console().print(
            f"[red]ALERT[/red] spend past the limit this period (urgent overrides or overages; "
            f"see the audit trail's budget_exhausted / budget_overage entries): {', '.join(over)}"
        )
        raise typer.Exit(1)
