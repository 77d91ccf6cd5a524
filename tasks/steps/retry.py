"""Retry only what a retry can fix: I/O hiccups, never a data-contract or config error."""

from __future__ import annotations

from typing import Any

from tasks.errors import ConfigError, DataContractError, PolicyDenied


def retry_transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: False for errors that would fail the same way again."""
    try:
        state.result()
    except (DataContractError, ConfigError, PolicyDenied, ValueError, TypeError, KeyError):
        return False
    except Exception:
        return True
    return False
