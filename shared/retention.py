"""Backup policies and retention: a policy's schedule and retention rules as frozen dataclasses,
parsed strictly from their JSON document, and `apply_policy`, the pure function that decides
which recovery points of one item a policy keeps and why (docs/design.md, "Retention policies").

Words:
- point: one recovery point of an item, as (point id, created_at: an aware datetime).
- zone: the policy's IANA time zone (UTC unless it names one); days, weeks, months and years
  are calendar periods there, so a DST change moves day boundaries with the wall clock.
- period: one calendar day, ISO week (Monday to Sunday), month or year in the zone.
- rule: daily, weekly, monthly or yearly retention: which point of a period it keeps and for
  how many periods, counted back from the one holding `now` (that one is 1).
- selector: the day a monthly or yearly rule keeps: a day of the month (1..31, or "last") or a
  week of the month and a weekday ("last Saturday").
- reason: why a point is kept, "daily 3 of 30": the rule, and which of its periods holds it.
- run: one scheduled backup time, a day's `times` entry on a scheduled day, read in the zone.
- missed run: the latest run at least MISSED_GRACE ago that no committed point of the item
  was created at or after: the backup due then never made a point.

apply_policy is deterministic: ties between points of the same second go by point id, and the
answer is sorted newest first. A policy document that breaks a rule is refused with a
MalformedMessage (an Invalid) naming the field by its dotted path, read with the messages'
FieldReader (shared/jsonfields.py); points apply_policy cannot decide on (one given
twice, a naive time, one created after `now`) are a ValueError, the caller's mistake.
`last_scheduled_run` and `missed_run` are pure too (a naive time is a ValueError).
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.jsonfields import FieldReader

POLICY_VERSION = 1
MAX_POINTS = 9999  # Azure Backup: recovery points per protected item
MAX_DAYS, MAX_WEEKS, MAX_MONTHS, MAX_YEARS = 9999, 5163, 1188, 99  # Azure Backup's retention bounds
MAX_TIMES_PER_DAY = 3  # the MARS agent backs up at most three times a day
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEKS_OF_MONTH = ("first", "second", "third", "fourth", "last")
TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]\Z")
ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*\Z")
LAST = "last"
# A run takes time: the agent commits its point when the backup ends, so a run is only missed
# once this long has passed since its scheduled time without a point.
MISSED_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class Schedule:
    """When the agent backs up: every day, or on `weekdays`, at each of `times` ("HH:MM" in the
    policy's zone, one to three, ascending)."""

    frequency: str
    times: tuple[str, ...]
    weekdays: tuple[str, ...] = ()

    @classmethod
    def from_fields(cls, r: FieldReader) -> "Schedule":
        r.only("frequency", "times", "weekdays")
        frequency = r.one_of("frequency", ("daily", "weekly"))
        times = r.list("times", MAX_TIMES_PER_DAY, min_len=1)
        for i, t in enumerate(times):
            if not isinstance(t, str) or not TIME_OF_DAY.match(t):
                raise r.fail(f"times[{i}]", f"is {str(t)[:20]!r}, not a time of day HH:MM")
        if times != sorted(set(times)):
            raise r.fail("times", "must be ascending, each time once")
        if frequency == "daily":
            if r.has("weekdays"):
                raise r.fail("weekdays", "is only for a weekly schedule")
            weekdays = []
        else:
            weekdays = r.list("weekdays", len(WEEKDAYS), min_len=1)
            for i, d in enumerate(weekdays):
                if d not in WEEKDAYS:
                    raise r.fail(f"weekdays[{i}]", f"is {str(d)[:20]!r}, not one of {', '.join(WEEKDAYS)}")
            if weekdays != sorted(set(weekdays), key=WEEKDAYS.index):
                raise r.fail("weekdays", "must be in week order (Monday first), each day once")
        return cls(frequency=frequency, times=tuple(times), weekdays=tuple(weekdays))

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"frequency": self.frequency, "times": list(self.times)}
        if self.frequency == "weekly":
            doc["weekdays"] = list(self.weekdays)
        return doc


@dataclass(frozen=True)
class DaySelector:
    """The day of a month a monthly or yearly rule keeps: `day` (1..31 or "last"), or the
    `weekday` of the `week` of the month ("first".."fourth" hold days 1-7 .. 22-28; "last" the
    month's last seven days). A day past the month's end (the 31st in April) selects no day."""

    day: int | str | None = None
    week: str | None = None
    weekday: str | None = None

    @classmethod
    def from_fields(cls, r: FieldReader) -> "DaySelector":
        r.only("day", "week", "weekday")
        if r.has("day"):
            if r.has("week") or r.has("weekday"):
                raise r.fail_object("names either a 'day' or a 'week' and 'weekday', not both")
            day = r.doc["day"]
            if day != LAST and (not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 31):
                raise r.fail("day", f"is {str(day)[:20]!r}, not 1..31 or 'last'")
            return cls(day=day)
        return cls(week=r.one_of("week", WEEKS_OF_MONTH), weekday=r.one_of("weekday", WEEKDAYS))

    def to_doc(self) -> dict[str, Any]:
        return {"day": self.day} if self.day is not None else {"week": self.week, "weekday": self.weekday}

    def label(self) -> str:
        if self.day == LAST:
            return "last day"
        if self.day is not None:
            return f"day {self.day}"
        return f"{self.week} {self.weekday.capitalize()}"

    def matches(self, day: date) -> bool:
        length = calendar.monthrange(day.year, day.month)[1]
        if self.day == LAST:
            return day.day == length
        if self.day is not None:
            return day.day == self.day
        if WEEKDAYS[day.weekday()] != self.weekday:
            return False
        if self.week == LAST:
            return day.day > length - 7
        return (day.day - 1) // 7 == WEEKS_OF_MONTH.index(self.week)


@dataclass(frozen=True)
class DailyRule:
    days: int


@dataclass(frozen=True)
class WeeklyRule:
    weekday: str
    weeks: int


@dataclass(frozen=True)
class MonthlyRule:
    on: DaySelector
    months: int


@dataclass(frozen=True)
class YearlyRule:
    month: int
    on: DaySelector
    years: int


@dataclass(frozen=True)
class Retention:
    """How long each kind of point is kept; at least one rule."""

    daily: DailyRule | None = None
    weekly: WeeklyRule | None = None
    monthly: MonthlyRule | None = None
    yearly: YearlyRule | None = None

    @classmethod
    def from_fields(cls, r: FieldReader) -> "Retention":
        r.only("daily", "weekly", "monthly", "yearly")
        rules: dict[str, Any] = {}
        if r.has("daily"):
            d = r.nested("daily")
            d.only("days")
            rules["daily"] = DailyRule(days=d.int("days", 1, MAX_DAYS))
        if r.has("weekly"):
            w = r.nested("weekly")
            w.only("weekday", "weeks")
            rules["weekly"] = WeeklyRule(weekday=w.one_of("weekday", WEEKDAYS), weeks=w.int("weeks", 1, MAX_WEEKS))
        if r.has("monthly"):
            m = r.nested("monthly")
            m.only("on", "months")
            rules["monthly"] = MonthlyRule(on=DaySelector.from_fields(m.nested("on")),
                                           months=m.int("months", 1, MAX_MONTHS))
        if r.has("yearly"):
            y = r.nested("yearly")
            y.only("month", "on", "years")
            rules["yearly"] = YearlyRule(month=y.int("month", 1, 12), on=DaySelector.from_fields(y.nested("on")),
                                         years=y.int("years", 1, MAX_YEARS))
        if not rules:
            raise r.fail_object("must hold at least one of daily, weekly, monthly, yearly")
        return cls(**rules)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.daily:
            doc["daily"] = {"days": self.daily.days}
        if self.weekly:
            doc["weekly"] = {"weekday": self.weekly.weekday, "weeks": self.weekly.weeks}
        if self.monthly:
            doc["monthly"] = {"on": self.monthly.on.to_doc(), "months": self.monthly.months}
        if self.yearly:
            doc["yearly"] = {"month": self.yearly.month, "on": self.yearly.on.to_doc(), "years": self.yearly.years}
        return doc


@dataclass(frozen=True)
class Policy:
    """A backup policy: its schedule, its retention, and the zone both are read in."""

    schedule: Schedule
    retention: Retention
    time_zone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @classmethod
    def from_doc(cls, doc: Any) -> "Policy":
        r = FieldReader(doc, "policy")
        r.only("v", "timeZone", "schedule", "retention")
        r.version("v", POLICY_VERSION)
        zone_name = r.str("timeZone", ZONE_NAME) if r.has("timeZone") else "UTC"
        try:
            ZoneInfo(zone_name)
        except (ValueError, OSError, ZoneInfoNotFoundError):  # OSError: a directory ("America") or a name too long
            raise r.fail("timeZone", f"is {zone_name[:40]!r}, not an IANA time zone") from None
        schedule = Schedule.from_fields(r.nested("schedule"))
        retention = Retention.from_fields(r.nested("retention"))
        _check_against_schedule(r, schedule, retention)
        return cls(schedule=schedule, retention=retention, time_zone=zone_name)

    def to_doc(self) -> dict[str, Any]:
        return {"v": POLICY_VERSION, "timeZone": self.time_zone, "schedule": self.schedule.to_doc(),
                "retention": self.retention.to_doc()}


def _check_against_schedule(r: FieldReader, schedule: Schedule, retention: Retention) -> None:
    """As Azure Backup does: a rule may only keep points that the schedule makes."""
    if schedule.frequency == "daily":
        return
    days = set(schedule.weekdays)
    if retention.daily:
        raise r.fail("retention.daily", "needs a daily schedule")
    if retention.weekly and retention.weekly.weekday not in days:
        raise r.fail("retention.weekly.weekday", f"{retention.weekly.weekday!r} is not a scheduled weekday")
    for name, rule in (("monthly", retention.monthly), ("yearly", retention.yearly)):
        if rule is None:
            continue
        if rule.on.day is not None:
            raise r.fail(f"retention.{name}.on.day", "needs a daily schedule; a weekly one keeps by week and weekday")
        if rule.on.weekday not in days:
            raise r.fail(f"retention.{name}.on.weekday", f"{rule.on.weekday!r} is not a scheduled weekday")


@dataclass(frozen=True)
class KeptPoint:
    """A point the policy keeps, with every reason, the one that keeps it longest first."""

    point_id: str
    created_at: datetime
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class RetentionDecision:
    """keep and expire partition the points; both newest first, points of one second by id."""

    keep: tuple[KeptPoint, ...]
    expire: tuple[tuple[str, datetime], ...]

    def to_doc(self) -> dict[str, Any]:
        return {"keep": [{"pointId": k.point_id, "reasons": list(k.reasons)} for k in self.keep],
                "expire": [point_id for point_id, _ in self.expire]}


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class _Rule:
    """One rule, reduced to: which local days it keeps, how far back a day's period is from
    today's (0: the same period), where the period after its last one starts, and how many."""

    label: str
    count: int
    picks: Callable[[date], bool]
    periods_back: Callable[[date, date], int]
    period_after: Callable[[date, int], date]

    def reason(self, day: date, today: date) -> tuple[date, str] | None:
        """(the local day from which the rule no longer keeps the day's point, the reason),
        or None once the day's period is more than `count` periods back."""
        back = self.periods_back(day, today)
        if back >= self.count:
            return None
        return self.period_after(day, self.count), f"{self.label} {back + 1} of {self.count}"


def _rules(retention: Retention) -> list[_Rule]:
    """The policy's rules, the longest kind first (which breaks ties between equal reasons)."""
    rules = []
    if retention.yearly:
        y = retention.yearly
        rules.append(_Rule(f"yearly ({calendar.month_name[y.month]}, {y.on.label()})", y.years,
                           lambda d: d.month == y.month and y.on.matches(d),
                           lambda d, today: today.year - d.year, lambda d, n: date(d.year + n, 1, 1)))
    if retention.monthly:
        m = retention.monthly
        rules.append(_Rule(f"monthly ({m.on.label()})", m.months, m.on.matches,
                           lambda d, today: _month_index(today) - _month_index(d),
                           lambda d, n: _month_start(_month_index(d) + n)))
    if retention.weekly:
        w = retention.weekly
        rules.append(_Rule(f"weekly ({w.weekday.capitalize()})", w.weeks,
                           lambda d: WEEKDAYS[d.weekday()] == w.weekday,
                           lambda d, today: (_monday(today) - _monday(d)).days // 7,
                           lambda d, n: _monday(d) + timedelta(weeks=n)))
    if retention.daily:
        rules.append(_Rule("daily", retention.daily.days, lambda d: True,
                           lambda d, today: (today - d).days, lambda d, n: d + timedelta(days=n)))
    return rules


def _check_points(points: Iterable[tuple[str, datetime]], now: datetime) -> list[tuple[str, datetime]]:
    if now.tzinfo is None:
        raise ValueError("apply_policy: now must be an aware datetime")
    checked, seen = [], set()
    for point_id, created_at in points:
        if point_id in seen:
            raise ValueError(f"apply_policy: point {point_id!r} is given twice")
        if created_at.tzinfo is None:
            raise ValueError(f"apply_policy: point {point_id!r} has a naive created_at")
        if created_at > now:
            raise ValueError(f"apply_policy: point {point_id!r} was created after now ({created_at.isoformat()})")
        seen.add(point_id)
        checked.append((point_id, created_at.astimezone(timezone.utc)))
    return checked


def apply_policy(points: Iterable[tuple[str, datetime]], policy: Policy, now: datetime) -> RetentionDecision:
    """Which of one item's points `policy` keeps at `now`, and why; pure and deterministic.

    Each rule keeps the newest point of each local day it picks, in its `count` periods back
    from now's; the newest point of the item is always kept ("latest"). At most MAX_POINTS are
    kept: the newest. Raises ValueError for a point given twice, a naive time, or a point
    created after `now`.
    """
    newest_first = sorted(_check_points(points, now), key=lambda p: (p[1], p[0]), reverse=True)
    zone = policy.zone
    today = now.astimezone(zone).date()
    rules = _rules(policy.retention)
    reasons: dict[str, list[tuple[date, int, str]]] = {}
    seen_days: set[date] = set()
    for point_id, created_at in newest_first:
        day = created_at.astimezone(zone).date()
        if day in seen_days:
            continue  # only a day's newest point can be its daily, weekly, monthly or yearly point
        seen_days.add(day)
        for order, rule in enumerate(rules):
            if rule.picks(day):
                found = rule.reason(day, today)
                if found:
                    reasons.setdefault(point_id, []).append((found[0], -order, found[1]))
    keep, expire = [], []
    for index, (point_id, created_at) in enumerate(newest_first):
        why = [text for _, _, text in sorted(reasons.get(point_id, []), reverse=True)]
        if index == 0:
            why.append("latest")
        if why and len(keep) < MAX_POINTS:
            keep.append(KeptPoint(point_id=point_id, created_at=created_at, reasons=tuple(why)))
        else:
            expire.append((point_id, created_at))
    return RetentionDecision(keep=tuple(keep), expire=tuple(expire))


def _aware(label: str, value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{label} must be an aware datetime")
    return value


def last_scheduled_run(policy: Policy, now: datetime) -> datetime:
    """The latest run of `policy`'s schedule at or before `now`, in UTC (a local time in a DST
    fold or gap would compare unequal to every other zone's time, PEP 495).

    A run's wall-clock time is read on each local day, so it stays at the same local time across
    a DST change. A time the clock skips (02:30 when it jumps from 02:00 to 03:00) runs at the
    instant it would have shown, an hour late on the new clock; a time it shows twice (when it
    falls back) runs at the first of them.
    """
    zone = policy.zone
    today = _aware("last_scheduled_run: now", now).astimezone(zone).date()
    times = [datetime.strptime(t, "%H:%M").time() for t in reversed(policy.schedule.times)]
    # Eight local days back always hold a run: a weekly schedule has at least one weekday.
    for back in range(8):
        day = today - timedelta(days=back)
        if policy.schedule.frequency == "weekly" and WEEKDAYS[day.weekday()] not in policy.schedule.weekdays:
            continue
        for t in times:
            # In UTC: two times of one zone compare by wall clock, wrong across a DST change.
            run = datetime.combine(day, t, tzinfo=zone).astimezone(timezone.utc)
            if run <= now.astimezone(timezone.utc):
                return run
    raise AssertionError("a schedule runs at least once a week")


def missed_run(policy: Policy, last_point_at: datetime | None, now: datetime,
               grace: timedelta = MISSED_GRACE) -> datetime | None:
    """The run an item missed at `now`, or None: the latest run at least `grace` before `now`,
    if the item's newest committed point (None: it has none yet) was created before it."""
    due = last_scheduled_run(policy, _aware("missed_run: now", now) - grace)
    if last_point_at is not None and _aware("missed_run: last_point_at", last_point_at).astimezone(timezone.utc) >= due:
        return None
    return due
