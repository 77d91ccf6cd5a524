"""A progress hook the CLI sets and flows call after each chunk (no-op when unset)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

ProgressHook = Callable[[int, int], None]
progress_hook: ContextVar[ProgressHook | None] = ContextVar("progress_hook", default=None)


def report(done: int, total: int) -> None:
    hook = progress_hook.get()
    if hook is not None:
        hook(done, total)
