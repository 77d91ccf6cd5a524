"""FinOps SQL over the lake: DuckDB views of ``ledger`` and ``decisions``, parameterised queries.

Every query takes the window ``[start, end)`` as bound parameters; no value is ever formatted
into SQL text. Aggregation happens here, in DuckDB; report assembly is in tasks/core/finops.py.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from tasks.core.finops import LedgerFigures
from tasks.io.lake import LakeStore

_WINDOW = "created_at >= $1 AND created_at < $2"

LEDGER_PROBLEMS = f"""
SELECT call_id, workflow, model,
       CASE WHEN cost_usd IS NULL THEN 'missing'
            WHEN NOT isfinite(cost_usd) THEN 'not a finite number'
            ELSE 'negative' END AS problem
FROM ledger
WHERE {_WINDOW} AND (cost_usd IS NULL OR NOT isfinite(cost_usd) OR cost_usd < 0)
ORDER BY created_at, call_id
"""  # noqa: S608  (no values: the window is bound as $1, $2)
# NOT isfinite, not isnan: DuckDB 2.0 prunes row groups on Parquet min/max statistics, which
# leave NaN out, so `isnan(cost_usd)` finds nothing; tests/io/test_finops.py guards this

LEDGER_MODELS = f"""
SELECT coalesce(model, '') AS model, min(call_id) AS first_call_id, count(*) AS calls,
       count(*) FILTER (WHERE cost_usd <> 0) AS paid_calls,
       min(call_id) FILTER (WHERE cost_usd <> 0) AS first_paid_call_id
FROM ledger WHERE {_WINDOW} GROUP BY ALL ORDER BY model
"""  # noqa: S608

BY_WORKFLOW = f"""
SELECT workflow, count(*) AS calls, sum(n_items)::BIGINT AS items,
       sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
       sum(gpu_seconds) AS gpu_seconds, sum(cost_usd) AS cost_usd
FROM ledger WHERE {_WINDOW} GROUP BY ALL ORDER BY cost_usd DESC, workflow
"""  # noqa: S608

BY_PATTERN = f"""
SELECT workflow, pattern, model, backend, count(*) AS calls, sum(n_items)::BIGINT AS items,
       sum(cost_usd) AS cost_usd
FROM ledger WHERE {_WINDOW} GROUP BY ALL ORDER BY cost_usd DESC, workflow, pattern, model
"""  # noqa: S608

BY_HOUR = f"""
SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AS hour, workflow,
       sum(cost_usd) AS cost_usd, count(*) AS calls
FROM ledger WHERE {_WINDOW} GROUP BY ALL ORDER BY hour, workflow
"""  # noqa: S608

TOP_CALLS = f"""
SELECT call_id, workflow, task, pattern, model, n_items, input_tokens, output_tokens,
       cost_usd, created_at AT TIME ZONE 'UTC' AS created_at
FROM ledger WHERE {_WINDOW} ORDER BY cost_usd DESC, call_id LIMIT $3
"""  # noqa: S608

OUTCOMES = """
SELECT workflow, path, decision, count(*) AS items, sum(cost_usd) AS attributed_usd
FROM decisions WHERE decided_at >= $1 AND decided_at < $2 GROUP BY ALL
ORDER BY workflow, path, decision
"""

# every call of the window, for attribution to the item that caused it (item_id may be absent
# in a lake written before ledger rows carried it: the core treats it as null)
CALLS = f"""
SELECT * FROM ledger WHERE {_WINDOW}
"""  # noqa: S608

# which items a chunk decided: a call shared by a chunk is split over them
MEMBERS = """
SELECT DISTINCT workflow, chunk_id, item_id FROM decisions
"""

# what the knowledge layer's answers were worth (paid now or served from a cache), per workflow
# of the ledger rows that answered them; a cache key belongs to one workflow
CACHE_SERVED = """
SELECT owner.workflow, sum(served.worth_usd) AS attributed_usd
FROM (SELECT key, sum(cost_usd + cost_saved_usd) AS worth_usd FROM cache_events
      WHERE created_at >= $1 AND created_at < $2 GROUP BY key) AS served
JOIN (SELECT DISTINCT chunk_id, workflow FROM ledger) AS owner ON owner.chunk_id = served.key
GROUP BY ALL ORDER BY owner.workflow
"""


class Warehouse:
    """Read-only SQL over the lake at ``lake``."""

    def __init__(self, lake: LakeStore):
        self.lake = lake

    def _run(self, dataset: str, sql: str, params: list[object]) -> pl.DataFrame:
        if not self.lake.files(dataset):
            return pl.DataFrame()
        return self.lake.query(sql, params)

    def figures(self, start: datetime, end: datetime, *, top_n: int = 10) -> LedgerFigures:
        """Every aggregate the FinOps report needs for ``[start, end)`` (aware datetimes)."""
        window: list[object] = [start, end]
        return LedgerFigures(
            problems=self._run("ledger", LEDGER_PROBLEMS, window),
            models=self._run("ledger", LEDGER_MODELS, window),
            by_workflow=self._run("ledger", BY_WORKFLOW, window),
            by_pattern=self._run("ledger", BY_PATTERN, window),
            by_hour=self._run("ledger", BY_HOUR, window),
            top_calls=self._run("ledger", TOP_CALLS, [*window, top_n]),
            outcomes=self._run("decisions", OUTCOMES, window),
            cache_served=self._run("cache_events", CACHE_SERVED, window),
            calls=self._run("ledger", CALLS, window),
            members=self._run("decisions", MEMBERS, []),
        )
