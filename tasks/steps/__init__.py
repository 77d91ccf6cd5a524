"""Prefect task declarations: names, retries, tags and cache policies; the work is a service.

Every module here declares tasks of a few lines, each calling a service of ``tasks/services``
(or an io adapter and a core function) with the ``Runtime`` of its settings. ``Settings`` is
the parameter, so a task can run in another process.
"""

from __future__ import annotations

from typing import Any

from tasks.errors import ConfigError, DataContractError, PolicyDenied


def retry_transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: False for errors that would fail the same way again.

    Retry only what a retry can fix: I/O hiccups, never a data-contract or config error.
    """
    try:
        state.result()
    except (DataContractError, ConfigError, PolicyDenied, ValueError, TypeError, KeyError):
        return False
    except Exception:
        return True
    return False
