"""What the flows share: the run id, parameter checks at the start, the intake prefix.

Assembly only: each helper calls steps in the order every literature flow uses them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
from prefect import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, ValidationError

from tasks.services.intake import Validated, source_files
from tasks.settings import Settings
from tasks.steps.scan import (
    load_block,
    load_citations,
    select_window,
    tools_and_route,
    validate,
)

P = TypeVar("P", bound=BaseModel)


def run_id() -> str:
    """The Prefect flow run's id, or a fresh one outside a run."""
    return str(flow_run.get_id() or uuid.uuid4())


def checked(model: type[P], /, **values: Any) -> P:
    """The run's parameters as ``model``, checked before any work.

    A cross-field error (``since`` after ``until``) the form accepted fails here, with one
    log line and a message that names the fields.

    Raises:
        ValueError: the parameters break a rule of ``model``.
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            e["msg"].removeprefix("Value error, ") for e in exc.errors(include_url=False)
        )
        get_run_logger().error("invalid parameters: %s", problems)
        raise ValueError(f"invalid parameters: {problems}") from None


@dataclass(frozen=True)
class Intake:
    """What the intake prefix produced: the window, its parse rejects, validation, routing."""

    window: pl.DataFrame
    rejected: pl.DataFrame
    checked: Validated
    routed: pl.DataFrame


def intake(
    settings: Settings,
    *,
    split: str,
    since: date | None = None,
    until: date | None = None,
    limit: int | None = None,
    sources: Sequence[str] | None = None,
) -> Intake:
    """load -> select the window -> validate -> tools and route."""
    citations, rejected = load_citations(source_files(sources), settings.cache_dir)
    window = select_window(citations, since, until, split, limit)
    valid = validate(window, settings)
    return Intake(window, rejected, valid, tools_and_route(valid.valid, settings))


def block_intake(
    settings: Settings,
    block: Path,
    *,
    split: str,
    since: date | None = None,
    until: date | None = None,
    limit: int | None = None,
) -> Intake:
    """The intake prefix over one parsed block: load -> window -> validate -> tools and route."""
    citations, rejected = load_block(block)
    window = select_window(citations, since, until, split, limit)
    valid = validate(window, settings)
    return Intake(window, rejected, valid, tools_and_route(valid.valid, settings))
