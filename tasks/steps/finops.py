"""Prefect tasks of the FinOps report: SQL in tasks/io/warehouse.py, assembly in tasks/core."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.finops import FinopsReport
from tasks.services import finops
from tasks.services.runtime import Runtime
from tasks.settings import Settings
from tasks.steps import retry_transient_only


@task(
    name="finops-report", retries=2, retry_condition_fn=retry_transient_only, cache_policy=NO_CACHE
)
def finops_report(settings: Settings, start: datetime, end: datetime) -> FinopsReport:
    """Ledger and decisions of ``[start, end)``, checked and aggregated."""
    return finops.report(Runtime.for_settings(settings), start, end)


@task(name="write-finops-html", cache_policy=NO_CACHE)
def write_finops_html(report: FinopsReport, path: Path) -> Path:
    """The self-contained HTML report with its charts."""
    return finops.write_html(report, path)
