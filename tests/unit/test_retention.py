"""Retention policies (shared/retention.py): strict parsing, the golden fixtures of
tests/retention/, decisions checked by hand on the cases that calendars get wrong, and
properties over random points."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.formats import MalformedMessage
from shared.retention import MAX_POINTS, Policy, apply_policy, last_scheduled_run, missed_run
from tests.retention.generate import FIXTURES, point_id
from tests.documents import edited

UTC = timezone.utc
FIXTURE_DIR = Path(__file__).resolve().parent.parent / "retention"


def policy(retention: dict, *, zone: str | None = None, schedule: dict | None = None) -> Policy:
    doc = {"v": 1, "schedule": schedule or {"frequency": "daily", "times": ["02:00"]}, "retention": retention}
    if zone:
        doc["timeZone"] = zone
    return Policy.from_doc(doc)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def decide(times: list[datetime], retention: dict, now: datetime, **kw) -> dict[str, list[str]]:
    """{point's created_at ISO: reasons} of what is kept."""
    points = [(point_id(t, str(i)), t) for i, t in enumerate(times)]
    decision = apply_policy(points, policy(retention, **kw), now)
    return {k.created_at.isoformat(): list(k.reasons) for k in decision.keep}


def load(name: str) -> dict:
    return json.loads((FIXTURE_DIR / name).read_text())


# The golden fixtures

@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_decisions_match_the_code(name):
    fixture = load(name)
    points = [(pid, datetime.fromisoformat(t)) for pid, t in fixture["points"]]
    decision = apply_policy(points, Policy.from_doc(fixture["policy"]), datetime.fromisoformat(fixture["now"]))
    assert decision.to_doc() == fixture["expected"]
    assert 300 <= len(points) and len(decision.keep) + len(decision.expire) == len(points)


def _kept(name: str) -> dict[str, list[str]]:
    fixture = load(name)
    created = dict(fixture["points"])
    return {created[k["pointId"]]: k["reasons"] for k in fixture["expected"]["keep"]}


def test_fixture_leap_day_is_the_yearly_point_of_leap_years_only():
    kept = _kept("gfs_utc.json")
    assert kept["2024-02-29T02:00:20+00:00"] == ["yearly (February, day 29) 3 of 6"]
    assert not [t for t in kept if t.startswith("2020-02-29")]  # seven years back: out of 6
    assert not [t for t in kept if t.startswith(("2023-02-28", "2025-02-28"))]


def test_fixture_month_ends_and_same_second_points():
    kept = _kept("gfs_utc.json")
    assert kept["2026-02-28T02:01:29+00:00"] == ["monthly (last day) 11 of 12"]  # February of a common year
    assert kept["2026-04-30T02:00:06+00:00"] == ["monthly (last day) 9 of 12"]
    fixture = load("gfs_utc.json")
    same_second = sorted(pid for pid, t in fixture["points"] if t == "2026-11-30T14:00:00+00:00")
    assert len(same_second) == 2
    assert same_second[1] in [k["pointId"] for k in fixture["expected"]["keep"]]
    assert same_second[0] in fixture["expected"]["expire"]


def test_fixture_local_days_in_berlin_across_dst():
    kept = _kept("dst_berlin.json")
    # 22:30 UTC on 24 October is 00:30 CEST on the 25th: the 24th's last point is 21:30 UTC.
    assert kept["2026-10-24T21:30:00+00:00"] == ["daily 11 of 250"]
    assert "2026-10-24T23:30:00+00:00" not in kept
    assert kept["2026-10-25T17:00:46+00:00"] == ["monthly (last Sunday) 2 of 14", "daily 10 of 250",
                                                "weekly (Sunday) 3 of 10"]


def test_fixture_iso_week_53_and_week_1():
    kept = _kept("weekly_schedule.json")
    assert kept["2027-01-02T03:00:07+00:00"] == ["weekly (Saturday) 2 of 26"]  # 2026-W53, now in 2027-W01
    assert kept["2026-12-26T03:00:27+00:00"] == ["yearly (December, last Saturday) 2 of 4",
                                                "weekly (Saturday) 3 of 26"]


def test_generator_refuses_without_regenerate(capsys):
    from tests.retention.generate import main
    assert main([]) == 2
    assert "--regenerate" in capsys.readouterr().err


# Decisions checked by hand

def test_leap_day_yearly_rule_skips_common_years():
    times = [at(2023, 2, 28, 2), at(2024, 2, 29, 2), at(2025, 2, 28, 2), at(2026, 3, 1, 2)]
    kept = decide(times, {"yearly": {"month": 2, "on": {"day": 29}, "years": 5}}, at(2026, 3, 1, 3))
    assert kept == {"2024-02-29T02:00:00+00:00": ["yearly (February, day 29) 3 of 5"],
                    "2026-03-01T02:00:00+00:00": ["latest"]}


def test_last_day_of_month_in_february_of_a_leap_year():
    times = [at(2024, 2, 28, 2), at(2024, 2, 29, 2), at(2024, 3, 30, 2), at(2024, 3, 31, 2), at(2024, 4, 2, 2)]
    kept = decide(times, {"monthly": {"on": {"day": "last"}, "months": 3}}, at(2024, 4, 2, 12))
    assert kept == {"2024-04-02T02:00:00+00:00": ["latest"],
                    "2024-03-31T02:00:00+00:00": ["monthly (last day) 2 of 3"],
                    "2024-02-29T02:00:00+00:00": ["monthly (last day) 3 of 3"]}


def test_day_31_selects_nothing_in_a_30_day_month():
    times = [at(2026, 3, 31, 2), at(2026, 4, 30, 2), at(2026, 5, 31, 2), at(2026, 6, 1, 2)]
    kept = decide(times, {"monthly": {"on": {"day": 31}, "months": 6}}, at(2026, 6, 1, 3))
    assert kept == {"2026-06-01T02:00:00+00:00": ["latest"],
                    "2026-05-31T02:00:00+00:00": ["monthly (day 31) 2 of 6"],
                    "2026-03-31T02:00:00+00:00": ["monthly (day 31) 4 of 6"]}


def test_daily_points_are_local_days_across_the_spring_dst_change():
    # Berlin, 29 March 2026: 01:00 UTC is 02:00 CET, which becomes 03:00 CEST.
    times = [at(2026, 3, 28, 22, 30), at(2026, 3, 28, 23, 30), at(2026, 3, 29, 0, 30), at(2026, 3, 29, 21, 59),
             at(2026, 3, 29, 22, 0)]
    kept = decide(times, {"daily": {"days": 3}}, at(2026, 3, 29, 23), zone="Europe/Berlin")
    # 22:30 UTC is 23:30 CET on the 28th; 21:59 UTC is 23:59 CEST, the 29th's last; 22:00 UTC the 30th.
    assert kept == {"2026-03-29T22:00:00+00:00": ["daily 1 of 3", "latest"],
                    "2026-03-29T21:59:00+00:00": ["daily 2 of 3"],
                    "2026-03-28T22:30:00+00:00": ["daily 3 of 3"]}
    in_utc = decide(times, {"daily": {"days": 3}}, at(2026, 3, 29, 23))
    assert sorted(in_utc) == ["2026-03-28T23:30:00+00:00", "2026-03-29T22:00:00+00:00"]


def test_the_repeated_hour_of_the_autumn_dst_change_is_one_local_day():
    # Berlin, 25 October 2026: 00:30 UTC is 02:30 CEST and 01:30 UTC is 02:30 CET, the same wall time.
    times = [at(2026, 10, 24, 21, 30), at(2026, 10, 25, 0, 30), at(2026, 10, 25, 1, 30), at(2026, 10, 25, 23, 30)]
    kept = decide(times, {"daily": {"days": 3}}, at(2026, 10, 26, 0), zone="Europe/Berlin")
    # 23:30 UTC on the 25th is 00:30 CET on the 26th; 21:30 UTC on the 24th is 23:30 CEST the 24th.
    assert kept == {"2026-10-25T23:30:00+00:00": ["daily 1 of 3", "latest"],
                    "2026-10-25T01:30:00+00:00": ["daily 2 of 3"],
                    "2026-10-24T21:30:00+00:00": ["daily 3 of 3"]}


def test_iso_week_1_across_the_year_boundary():
    # 2026 has 53 ISO weeks: 28 Dec 2026 to 3 Jan 2027 is 2026-W53; 2027-W01 starts on 4 January.
    times = [at(2026, 12, 20, 2), at(2026, 12, 27, 2), at(2027, 1, 3, 2), at(2027, 1, 5, 2)]
    kept = decide(times, {"weekly": {"weekday": "sunday", "weeks": 2}}, at(2027, 1, 6, 12))
    assert kept == {"2027-01-05T02:00:00+00:00": ["latest"],
                    "2027-01-03T02:00:00+00:00": ["weekly (Sunday) 2 of 2"]}


def test_points_of_the_same_second_go_by_point_id():
    same = at(2026, 6, 1, 2)
    points = [("20260601T020000Z-0000000b", same), ("20260601T020000Z-0000000a", same),
              ("20260601T020000Z-0000000c", same)]
    decision = apply_policy(points, policy({"daily": {"days": 7}}), at(2026, 6, 1, 3))
    assert [(k.point_id, k.reasons) for k in decision.keep] == [("20260601T020000Z-0000000c",
                                                                  ("daily 1 of 7", "latest"))]
    assert [pid for pid, _ in decision.expire] == ["20260601T020000Z-0000000b", "20260601T020000Z-0000000a"]
    assert apply_policy(reversed(points), policy({"daily": {"days": 7}}), at(2026, 6, 1, 3)) == decision


def test_the_latest_point_is_kept_when_no_rule_keeps_it():
    kept = decide([at(2020, 1, 1, 2), at(2020, 1, 2, 2)], {"daily": {"days": 7}}, at(2026, 1, 1))
    assert kept == {"2020-01-02T02:00:00+00:00": ["latest"]}


def test_monthly_last_saturday_and_reasons_longest_first():
    times = [at(2026, 10, 31, 2), at(2026, 11, 28, 2), at(2026, 11, 29, 2), at(2026, 12, 1, 2)]
    kept = decide(times, {"daily": {"days": 5}, "weekly": {"weekday": "saturday", "weeks": 2},
                          "monthly": {"on": {"week": "last", "weekday": "saturday"}, "months": 12}},
                  at(2026, 12, 2, 8))
    assert kept == {"2026-12-01T02:00:00+00:00": ["daily 2 of 5", "latest"],
                    "2026-11-29T02:00:00+00:00": ["daily 4 of 5"],
                    # kept until 1 Dec 2027, 7 Dec 2026 (two weeks from Monday 23 Nov), 3 Dec 2026
                    "2026-11-28T02:00:00+00:00": ["monthly (last Saturday) 2 of 12", "weekly (Saturday) 2 of 2",
                                                  "daily 5 of 5"],
                    "2026-10-31T02:00:00+00:00": ["monthly (last Saturday) 3 of 12"]}


def test_at_most_9999_points_are_kept_the_newest():
    now = at(2026, 12, 2, 12)
    times = [now - timedelta(days=n, hours=1) for n in range(MAX_POINTS + 100)]
    points = [(f"p{n:05d}", t) for n, t in enumerate(times)]
    retention = {"daily": {"days": 9999}, "weekly": {"weekday": "monday", "weeks": 5163}}
    decision = apply_policy(points, policy(retention), now)
    assert len(decision.keep) == MAX_POINTS
    assert [k.point_id for k in decision.keep] == [f"p{n:05d}" for n in range(MAX_POINTS)]
    assert any(t.weekday() == 0 for _, t in decision.expire)  # weekly points beyond the cap expire too


def test_points_are_checked():
    p = policy({"daily": {"days": 7}})
    now = at(2026, 1, 2)
    with pytest.raises(ValueError, match="given twice"):
        apply_policy([("a", at(2026, 1, 1)), ("a", at(2026, 1, 1, 1))], p, now)
    with pytest.raises(ValueError, match="naive"):
        apply_policy([("a", datetime(2026, 1, 1))], p, now)
    with pytest.raises(ValueError, match="after now"):
        apply_policy([("a", at(2026, 1, 3))], p, now)
    assert apply_policy([], p, now).keep == ()


# Parsing

FULL = {"v": 1, "timeZone": "Europe/Berlin",
        "schedule": {"frequency": "daily", "times": ["02:00", "10:00", "18:00"]},
        "retention": {"daily": {"days": 30}, "weekly": {"weekday": "sunday", "weeks": 12},
                      "monthly": {"on": {"week": "last", "weekday": "saturday"}, "months": 12},
                      "yearly": {"month": 12, "on": {"day": "last"}, "years": 10}}}


def test_policy_round_trips_through_its_document():
    parsed = Policy.from_doc(FULL)
    assert parsed.to_doc() == FULL
    assert Policy.from_doc(json.loads(json.dumps(parsed.to_doc()))) == parsed
    weekly = {"v": 1, "timeZone": "UTC", "schedule": {"frequency": "weekly", "times": ["03:00"],
                                                      "weekdays": ["wednesday", "saturday"]},
              "retention": {"weekly": {"weekday": "saturday", "weeks": 5163}}}
    assert Policy.from_doc(weekly).to_doc() == weekly


def _with(path: str, value):
    return edited(FULL, path, value)


@pytest.mark.parametrize("path, value, message", [
    ("v", 2, "policy: unsupported schema version 2"),
    ("timeZone", "Mars/Olympus", "'timeZone'"),
    ("timeZone", "../etc/passwd", "'timeZone'"),
    ("schedule.times", ["02:00", "10:00", "14:00", "18:00"], "'schedule.times' holds 4"),
    ("schedule.times", ["10:00", "02:00"], "'schedule.times' must be ascending"),
    ("schedule.times", ["24:00"], r"'schedule.times\[0\]'"),
    ("schedule.frequency", "hourly", "'schedule.frequency'"),
    ("schedule.weekdays", ["monday"], "'schedule.weekdays' is only for a weekly"),
    ("schedule.weekdays", None, "'schedule.weekdays' is only for a weekly"),  # null is not absent
    ("timeZone", None, "'timeZone' must be of type str, not NoneType"),
    ("retention.daily.days", 0, r"'retention.daily.days' is 0, outside 1..9999"),
    ("retention.daily.days", 10000, "outside 1..9999"),
    ("retention.daily.days", True, "'retention.daily.days' must be of type int"),
    ("retention.weekly.weeks", 5164, r"'retention.weekly.weeks' is 5164, outside 1..5163"),
    ("retention.weekly.weekday", "Sunday", "'retention.weekly.weekday'"),
    ("retention.monthly.months", 1189, "outside 1..1188"),
    ("retention.monthly.on", {"day": 32}, "'retention.monthly.on.day'"),
    ("retention.monthly.on", {"day": 1, "week": "last"}, "'retention.monthly.on' names either .* not both"),
    ("retention.monthly.on", {"week": "fifth", "weekday": "monday"}, "'retention.monthly.on.week'"),
    ("retention.yearly.years", 100, "outside 1..99"),
    ("retention.yearly.month", 13, "'retention.yearly.month' is 13, outside 1..12"),
    ("retention.yearly.extra", 1, "unknown field 'retention.yearly.extra'"),
    ("retention.daily", None, "'retention.daily' must be of type dict, not NoneType"),
    ("retention", {}, "'retention' must hold at least one"),
    ("schedule", KeyError, "'schedule' is missing"),
])
def test_bad_policies_are_refused_naming_the_field(path, value, message):
    with pytest.raises(MalformedMessage, match=message):
        Policy.from_doc(_with(path, value))


def test_a_policy_that_is_not_an_object_is_refused():
    with pytest.raises(MalformedMessage, match="policy is not a JSON object"):
        Policy.from_doc([FULL])


@pytest.mark.parametrize("retention, message", [
    ({"daily": {"days": 7}}, "'retention.daily' needs a daily schedule"),
    ({"weekly": {"weekday": "sunday", "weeks": 4}}, "'retention.weekly.weekday' 'sunday' is not a scheduled"),
    ({"monthly": {"on": {"day": 1}, "months": 4}}, "'retention.monthly.on.day' needs a daily schedule"),
    ({"yearly": {"month": 1, "on": {"week": "first", "weekday": "monday"}, "years": 2}},
     "'retention.yearly.on.weekday' 'monday' is not a scheduled"),
])
def test_rules_must_keep_points_a_weekly_schedule_makes(retention, message):
    schedule = {"frequency": "weekly", "times": ["03:00"], "weekdays": ["saturday"]}
    with pytest.raises(MalformedMessage, match=message):
        policy(retention, schedule=schedule)


# Properties

_BASE = at(2019, 1, 1)
offsets = st.lists(st.integers(min_value=0, max_value=8 * 366 * 24 * 4), max_size=60)  # quarter hours


def _points(quarters: list[int]) -> list[tuple[str, datetime]]:
    return [(f"p{i:03d}", _BASE + timedelta(minutes=15 * q)) for i, q in enumerate(quarters)]


def _retention(n: int) -> dict:
    return {"daily": {"days": n}, "weekly": {"weekday": "sunday", "weeks": n},
            "monthly": {"on": {"week": "last", "weekday": "friday"}, "months": n},
            "yearly": {"month": 2, "on": {"day": "last"}, "years": min(n, 99)}}


@settings(max_examples=150, deadline=None, database=None)
@given(offsets, st.integers(min_value=1, max_value=60), st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
def test_keep_and_expire_partition_the_points_and_keep_the_latest(quarters, n, zone):
    points = _points(quarters)
    now = _BASE + timedelta(days=8 * 366 + 1)
    decision = apply_policy(points, policy(_retention(n), zone=zone), now)
    kept = [k.point_id for k in decision.keep]
    expired = [pid for pid, _ in decision.expire]
    assert sorted(kept + expired) == sorted(pid for pid, _ in points)
    assert not set(kept) & set(expired)
    if points:
        latest = max(points, key=lambda p: (p[1], p[0]))[0]
        assert kept[0] == latest and "latest" in decision.keep[0].reasons
    assert all(k.reasons for k in decision.keep)


@settings(max_examples=150, deadline=None, database=None)
@given(offsets, st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=60),
       st.sampled_from(["UTC", "Europe/Berlin"]))
def test_a_longer_retention_never_expires_more(quarters, n, more, zone):
    points = _points(quarters)
    now = _BASE + timedelta(days=8 * 366 + 1)
    shorter = apply_policy(points, policy(_retention(n), zone=zone), now)
    longer = apply_policy(points, policy(_retention(n + more), zone=zone), now)
    assert {pid for pid, _ in longer.expire} <= {pid for pid, _ in shorter.expire}


# Scheduled runs and missed backups (last_scheduled_run, missed_run)

def scheduled(schedule: dict, zone: str | None = None) -> Policy:
    retention = {"daily": {"days": 7}} if schedule["frequency"] == "daily" else \
        {"weekly": {"weekday": schedule["weekdays"][0], "weeks": 4}}
    return policy(retention, zone=zone, schedule=schedule)


THRICE = {"frequency": "daily", "times": ["06:00", "12:00", "18:00"]}
WEEKENDS = {"frequency": "weekly", "times": ["22:00"], "weekdays": ["saturday", "sunday"]}


@pytest.mark.parametrize("now, run", [
    (at(2026, 12, 2, 12, 0), at(2026, 12, 2, 12, 0)),  # a run's own time is at or before now
    (at(2026, 12, 2, 11, 59), at(2026, 12, 2, 6, 0)),
    (at(2026, 12, 2, 23, 0), at(2026, 12, 2, 18, 0)),
    (at(2026, 12, 2, 5, 59), at(2026, 12, 1, 18, 0)),  # before the day's first: yesterday's last
])
def test_the_last_run_of_a_daily_schedule_at_three_times(now, run):
    assert last_scheduled_run(scheduled(THRICE), now) == run


@pytest.mark.parametrize("now, run", [
    (at(2026, 12, 7, 9, 0), at(2026, 12, 6, 22, 0)),    # Monday: Sunday's run, across the week boundary
    (at(2026, 12, 11, 23, 0), at(2026, 12, 6, 22, 0)),  # Friday: still last Sunday's
    (at(2026, 12, 12, 21, 59), at(2026, 12, 6, 22, 0)),  # Saturday before its run
    (at(2026, 12, 12, 22, 0), at(2026, 12, 12, 22, 0)),
    (at(2026, 12, 13, 21, 0), at(2026, 12, 12, 22, 0)),  # Sunday before its run: Saturday's
])
def test_the_last_run_of_a_weekly_schedule(now, run):
    assert last_scheduled_run(scheduled(WEEKENDS), now) == run


def test_a_weekly_schedule_on_one_day_looks_back_a_whole_week():
    mondays = scheduled({"frequency": "weekly", "times": ["08:00"], "weekdays": ["monday"]})
    assert last_scheduled_run(mondays, at(2026, 12, 7, 7, 59)) == at(2026, 11, 30, 8, 0)


def test_runs_keep_their_local_time_across_dst():
    berlin = scheduled({"frequency": "daily", "times": ["21:00"]}, zone="Europe/Berlin")
    # 21:00 Berlin is 20:00 UTC in winter, 19:00 UTC in summer (the clock moved on 29 March 2026).
    assert last_scheduled_run(berlin, at(2026, 3, 28, 20, 30)) == at(2026, 3, 28, 20, 0)
    assert last_scheduled_run(berlin, at(2026, 3, 29, 19, 30)) == at(2026, 3, 29, 19, 0)
    assert last_scheduled_run(berlin, at(2026, 3, 29, 18, 59)) == at(2026, 3, 28, 20, 0)


def test_a_time_the_clock_skips_runs_at_the_instant_it_would_have_shown():
    berlin = scheduled({"frequency": "daily", "times": ["02:30"]}, zone="Europe/Berlin")
    # On 29 March 2026 Berlin's clock jumps from 02:00 to 03:00 (01:00 UTC): 02:30 CET is 01:30 UTC.
    assert last_scheduled_run(berlin, at(2026, 3, 29, 1, 29)) == at(2026, 3, 28, 1, 30)
    assert last_scheduled_run(berlin, at(2026, 3, 29, 1, 30)) == at(2026, 3, 29, 1, 30)


def test_a_time_the_clock_shows_twice_runs_at_the_first():
    berlin = scheduled({"frequency": "daily", "times": ["02:30"]}, zone="Europe/Berlin")
    # On 25 October 2026 Berlin falls back from 03:00 CEST to 02:00 CET: 02:30 CEST is 00:30 UTC.
    now_in_berlin = at(2026, 10, 25, 1, 45).astimezone(berlin.zone)  # 02:45 CET, the second 02:xx
    assert last_scheduled_run(berlin, now_in_berlin) == at(2026, 10, 25, 0, 30)


def test_missed_after_the_grace_when_no_point_came_since_the_run():
    daily_21 = scheduled({"frequency": "daily", "times": ["21:00"]})
    yesterday, today = at(2026, 12, 1, 21, 5), at(2026, 12, 2, 21, 0)
    # The run of 21:00 may still be going until 22:00: yesterday's run is the one due, and it made a point.
    assert missed_run(daily_21, yesterday, at(2026, 12, 2, 21, 59)) is None
    assert missed_run(daily_21, yesterday, at(2026, 12, 2, 22, 0)) == today
    assert missed_run(daily_21, at(2026, 12, 2, 21, 0), at(2026, 12, 2, 22, 0)) is None
    assert missed_run(daily_21, yesterday, at(2026, 12, 2, 21, 30), grace=timedelta(minutes=10)) == today


def test_a_weekly_item_is_not_missed_between_its_days():
    weekends = scheduled(WEEKENDS)
    sunday_point = at(2026, 12, 6, 22, 40)
    assert missed_run(weekends, sunday_point, at(2026, 12, 12, 22, 59)) is None
    assert missed_run(weekends, sunday_point, at(2026, 12, 12, 23, 0)) == at(2026, 12, 12, 22, 0)


def test_an_item_with_no_point_yet_missed_the_last_run():
    assert missed_run(scheduled(THRICE), None, at(2026, 12, 2, 13, 0)) == at(2026, 12, 2, 12, 0)
    assert missed_run(scheduled(THRICE), None, at(2026, 12, 2, 12, 59)) == at(2026, 12, 2, 6, 0)


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="now must be an aware"):
        last_scheduled_run(scheduled(THRICE), datetime(2026, 12, 2, 12, 0))
    with pytest.raises(ValueError, match="last_point_at must be an aware"):
        missed_run(scheduled(THRICE), datetime(2026, 12, 2, 12, 0), at(2026, 12, 2, 12, 0))
