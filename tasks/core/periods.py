"""Budget periods: the UTC window a moment falls in. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tasks.rules import Period


def period_window(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """The [start, end) of the UTC day or ISO week (Monday first) that holds ``now``.

    Raises:
        ValueError: ``now`` has no time zone (a naive clock would shift budgets by hours).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    start = day - timedelta(days=day.weekday())
    return start, start + timedelta(days=7)
