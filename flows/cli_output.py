"""How the CLI shows results: one console and one table printer for every command."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table


def console() -> Console:
    """Standard output, sized by the terminal (or ``COLUMNS``) now, not at import.

    A module-level ``Console()`` fixes its width from ``COLUMNS`` as it was when the module
    was first imported, so one caller's width stuck to every later command in the process.
    """
    return Console()


def errors() -> Console:
    """Standard error, sized as ``console``."""
    return Console(stderr=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def measures(title: str, rows: Mapping[str, Any]) -> Table:
    """A two-column table: measure, value (dicts as JSON, anything else as ``str``)."""
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    return table


def frame(title: str, data: pl.DataFrame) -> Table:
    """A frame as a table: numeric columns right-aligned."""
    table = Table(title=title)
    for column in data.columns:
        table.add_column(column, justify="right" if data[column].dtype.is_numeric() else "left")
    for row in data.rows():
        table.add_row(*(_cell(v) for v in row))
    return table


def records(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    """Rows already formatted as text under ``columns``."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table
