"""Prefect tasks of the FinOps report: SQL in tasks/io/warehouse.py, assembly in tasks/core."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.finops import FinopsReport, assemble
from tasks.core.finops_render import render_charts, render_html
from tasks.io.reports import write_text_atomic
from tasks.io.warehouse import Warehouse
from tasks.rules import load_models
from tasks.settings import Settings
from tasks.steps import resources
from tasks.steps.retry import retry_transient_only


@task(
    name="finops-report", retries=2, retry_condition_fn=retry_transient_only, cache_policy=NO_CACHE
)
def finops_report(settings: Settings, start: datetime, end: datetime) -> FinopsReport:
    """Ledger and decisions of ``[start, end)``, checked and aggregated."""
    figures = Warehouse(resources.lake(settings)).figures(start, end)
    return assemble(
        figures,
        load_models(settings),
        start=start,
        end=end,
        burst_factor=settings.supervisor.burst_factor,
        baseline_hours=settings.supervisor.burst_baseline_hours,
    )


@task(name="write-finops-html", cache_policy=NO_CACHE)
def write_finops_html(report: FinopsReport, path: Path) -> Path:
    """The self-contained HTML report with its charts."""
    return write_text_atomic(path, render_html(report, render_charts(report)))
