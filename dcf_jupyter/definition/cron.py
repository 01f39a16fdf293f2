"""Schedules (config.yaml's `schedule:`): cron's five fields, or six with seconds first, read by croniter."""

from __future__ import annotations

from typing import Any

EXAMPLE = '"*/5 * * * *" (every five minutes) or "*/30 * * * * *" (seconds first: every 30 s)'


def _iterator(schedule: str, start: float) -> Any:
    from croniter import croniter  # imported when a schedule is read: workers never need it

    fields = len(schedule.split())
    if fields not in (5, 6):
        raise ValueError(f"{fields} fields")
    return croniter(schedule, start, second_at_beginning=fields == 6)


def cron_problem(schedule: str) -> str | None:
    """Why `schedule` is no schedule (None when it is one)."""
    try:
        _iterator(schedule, 0.0).get_next(float)
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors derive from ValueError
        return f"{schedule!r} is not a cron schedule ({exc}): write five fields, or six with seconds first: {EXAMPLE}"
    return None


def next_run(schedule: str, after: float) -> float:
    """The Unix time of the schedule's first run after `after`."""
    return float(_iterator(schedule, after).get_next(float))
