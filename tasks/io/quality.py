"""Data quality with Great Expectations: an ephemeral context validating a pandas frame.

The suite is data (configs/expectations/*.yaml). Each failing row is returned with every
expectation it broke, so quarantine can say exactly why; no row is dropped here.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from tasks.errors import ConfigError


def _class_name(expectation_type: str) -> str:
    return "".join(part.capitalize() for part in expectation_type.split("_"))


@functools.cache
def _context() -> Any:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}  # type: ignore[assignment]
    return context


def load_suite_spec(path: Path) -> dict[str, Any]:
    """Read a suite file; every expectation type must exist in Great Expectations."""
    import great_expectations as gx

    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or not spec.get("expectations"):
        raise ConfigError(f"{path}: needs a name and a non-empty list of expectations")
    for item in spec["expectations"]:
        if not hasattr(gx.expectations, _class_name(str(item.get("type", "")))):
            raise ConfigError(f"{path}: unknown expectation type {item.get('type')!r}")
    return dict(spec)


def validate(frame: pl.DataFrame, suite_spec: dict[str, Any]) -> pl.DataFrame:
    """Rows that break the suite: ``_row`` (position in ``frame``), ``field`` and ``reason``.

    Args:
        frame: the rows to check (any columns the suite names).
        suite_spec: a suite as read by ``load_suite_spec``.
    """
    import great_expectations as gx

    failures = pl.DataFrame(schema={"_row": pl.Int64, "field": pl.String, "reason": pl.String})
    if frame.is_empty():
        return failures
    context = _context()
    name = re.sub(r"\W", "-", str(suite_spec.get("name", "suite")))
    source = context.data_sources.add_or_update_pandas(f"{name}-source")
    asset = next((a for a in source.assets if a.name == name), None) or source.add_dataframe_asset(
        name
    )
    batch_definition = next(
        (b for b in asset.batch_definitions if b.name == "whole"), None
    ) or asset.add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name=name)
    for item in suite_spec["expectations"]:
        suite.add_expectation(getattr(gx.expectations, _class_name(item["type"]))(**item["kwargs"]))
    pandas_frame = frame.to_pandas()  # RangeIndex: unexpected indexes are row positions
    batch = batch_definition.get_batch(batch_parameters={"dataframe": pandas_frame})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    rows: list[dict[str, Any]] = []
    for outcome in result.results:
        if outcome.success:
            continue
        config = outcome.expectation_config
        column = str(config.kwargs.get("column", ""))
        indexes = outcome.result.get("unexpected_index_list") or []
        label = f"{config.type}({column})"
        rows.extend({"_row": int(i), "field": column, "reason": label} for i in indexes)
    if not rows:
        return failures
    return (
        pl.DataFrame(rows, schema=failures.schema)
        .group_by("_row", maintain_order=True)
        .agg(pl.col("field").first(), pl.col("reason").str.join("; "))
        .sort("_row")
    )
