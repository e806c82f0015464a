"""Writes the golden retention fixtures of tests/retention/ from fixed inputs and today's code.

Each fixture holds one item's points, a policy, `now`, and what apply_policy decided: rewriting
them accepts whatever the code now decides as the rule, so this refuses to run without
--regenerate. Run it only for a deliberate change of the retention rules (docs/design.md,
"Retention policies") or a new fixture, and review the diff:

    .venv/bin/python -m tests.retention.generate --regenerate

tests/unit/test_retention.py checks the files against the code, and asserts a few of their
decisions by hand.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from shared.retention import Policy, apply_policy

HERE = Path(__file__).resolve().parent
UTC = timezone.utc


def point_id(created_at: datetime, salt: str = "") -> str:
    digest = hashlib.sha256(f"{created_at.isoformat()}{salt}".encode()).hexdigest()[:8]
    return f"{created_at:%Y%m%dT%H%M%S}Z-{digest}"


def _scheduled(start: datetime, end: datetime, hours: tuple[int, ...], rng: random.Random,
               skip: float, weekdays: tuple[int, ...] | None = None) -> list[datetime]:
    """Backups at `hours` UTC each day (or on `weekdays`), a few seconds late, some missed."""
    times, day = [], start
    while day < end:
        if weekdays is None or day.weekday() in weekdays:
            for hour in hours:
                when = day.replace(hour=hour) + timedelta(seconds=rng.randrange(0, 90))
                if when < end and rng.random() >= skip:
                    times.append(when)
        day += timedelta(days=1)
    return times


def _gfs_utc() -> dict[str, Any]:
    """Seven years of a daily schedule: every fourth day, and every day around the leap day,
    month ends and the 2020/21 ISO year boundary; two points of one second."""
    rng = random.Random(13)
    now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    times = [t for t in _scheduled(datetime(2019, 12, 20, tzinfo=UTC), now, (2,), rng, 0.0)
             if t.toordinal() % 4 == 0 or t >= now - timedelta(days=40)
             or (t.month, t.day) in ((2, 28), (2, 29), (3, 1), (1, 31), (4, 30), (12, 31))]
    same_second = datetime(2026, 11, 30, 14, 0, 0, tzinfo=UTC)
    points = [(point_id(t), t) for t in times] + [(point_id(same_second, s), same_second) for s in "ab"]
    policy = {"v": 1, "schedule": {"frequency": "daily", "times": ["02:00", "14:00"]},
              "retention": {"daily": {"days": 30}, "weekly": {"weekday": "sunday", "weeks": 12},
                            "monthly": {"on": {"day": "last"}, "months": 12},
                            "yearly": {"month": 2, "on": {"day": 29}, "years": 6}}}
    return {"about": _gfs_utc.__doc__, "policy": policy, "now": now, "points": points}


def _dst_berlin() -> dict[str, Any]:
    """Europe/Berlin: hourly points across the spring and autumn DST changes of 2026, and
    three a day otherwise; local days, weeks and months decide, not UTC's."""
    rng = random.Random(29)
    now = datetime(2026, 11, 3, 22, 45, tzinfo=UTC)  # 23:45 CET, Tuesday 3 November
    times = _scheduled(datetime(2025, 10, 1, tzinfo=UTC), now, (1, 9, 17), rng, 0.3)
    for start in (datetime(2026, 3, 28, 20, tzinfo=UTC), datetime(2026, 10, 24, 20, tzinfo=UTC)):
        times += [start + timedelta(hours=h, minutes=30) for h in range(8)]
    points = [(point_id(t), t) for t in sorted(set(times))]
    policy = {"v": 1, "timeZone": "Europe/Berlin",
              "schedule": {"frequency": "daily", "times": ["02:00", "10:00", "18:00"]},
              "retention": {"daily": {"days": 250}, "weekly": {"weekday": "sunday", "weeks": 10},
                            "monthly": {"on": {"week": "last", "weekday": "sunday"}, "months": 14}}}
    return {"about": _dst_berlin.__doc__, "policy": policy, "now": now, "points": points}


def _weekly_schedule() -> dict[str, Any]:
    """Six years of a weekly schedule on Wednesday and Saturday, some missed, now in ISO week
    2027-W01 after the 53-week ISO year 2026: weekly, monthly and yearly points chosen by week
    and weekday ("last Saturday", "first Wednesday")."""
    rng = random.Random(52)
    now = datetime(2027, 1, 6, 12, tzinfo=UTC)  # a Wednesday of ISO week 2027-W01
    times = _scheduled(datetime(2021, 1, 1, tzinfo=UTC), now, (3,), rng, 0.15, weekdays=(2, 5))
    iso_week_53 = datetime(2027, 1, 2, 3, 0, 7, tzinfo=UTC)  # Saturday of 2026-W53
    times = sorted(set(times) - {t for t in times if t.date() == iso_week_53.date()} | {iso_week_53})
    points = [(point_id(t), t) for t in times]
    policy = {"v": 1, "schedule": {"frequency": "weekly", "weekdays": ["wednesday", "saturday"], "times": ["03:00"]},
              "retention": {"weekly": {"weekday": "saturday", "weeks": 26},
                            "monthly": {"on": {"week": "first", "weekday": "wednesday"}, "months": 24},
                            "yearly": {"month": 12, "on": {"week": "last", "weekday": "saturday"}, "years": 4}}}
    return {"about": _weekly_schedule.__doc__, "policy": policy, "now": now, "points": points}


FIXTURES = {"gfs_utc.json": _gfs_utc, "dst_berlin.json": _dst_berlin, "weekly_schedule.json": _weekly_schedule}


def fixture_doc(case: dict[str, Any]) -> dict[str, Any]:
    policy = Policy.from_doc(case["policy"])
    decision = apply_policy(case["points"], policy, case["now"])
    return {"about": case["about"], "policy": case["policy"], "now": case["now"].isoformat(),
            "points": [[pid, t.isoformat()] for pid, t in case["points"]], "expected": decision.to_doc()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regenerate", action="store_true",
                        help="rewrite the fixtures from today's code (a change of the retention rules)")
    args = parser.parse_args(argv)
    if not args.regenerate:
        print("refusing to rewrite tests/retention/*.json: they pin what retention keeps, and rewriting "
              "them accepts whatever the code now decides. For a deliberate change of the rules or a new "
              "fixture, run again with --regenerate and review the diff.", file=sys.stderr)
        return 2
    for name, build in FIXTURES.items():
        (HERE / name).write_text(json.dumps(fixture_doc(build()), indent=1) + "\n")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
