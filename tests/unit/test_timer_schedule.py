"""NCRONTAB schedules of timer triggers, as the Functions host reads them (UTC)."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.local.timers import parse_schedule


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_every_minute_and_every_five_seconds() -> None:
    minute = parse_schedule("0 */1 * * * *")
    assert minute.next_after(at("2026-12-03 05:59:30")) == at("2026-12-03 06:00:00")
    assert minute.next_after(at("2026-12-03 06:00:00")) == at("2026-12-03 06:01:00")
    five = parse_schedule("*/5 * * * * *")
    assert five.next_after(at("2026-12-03 06:00:03.9")) == at("2026-12-03 06:00:05")
    assert five.next_after(at("2026-12-31 23:59:58")) == at("2027-01-01 00:00:00")


def test_ranges_lists_steps_and_names() -> None:
    s = parse_schedule("30 15 9-17/4 * Jan,Mar Mon-Fri")
    assert s.hours == (9, 13, 17) and s.minutes == (15,) and s.seconds == (30,)
    assert s.months == {1, 3} and s.weekdays == {1, 2, 3, 4, 5}
    # Saturday 2027-01-02 -> Monday 2027-01-04 09:15:30
    assert s.next_after(at("2027-01-01 17:15:30")) == at("2027-01-04 09:15:30")
    assert parse_schedule("0 0 0 1/10 * *").days == {1, 11, 21, 31}


def test_day_of_month_and_weekday_must_both_match() -> None:
    friday_13th = parse_schedule("0 0 12 13 * 5")
    assert friday_13th.next_after(at("2026-12-03 00:00:00")) == at("2027-08-13 12:00:00")


@pytest.mark.parametrize(("text", "message"), [
    ("0 */5 * * *", "six fields"),
    ("00:05:00", "TimeSpan"),
    ("0 61 * * * *", "minute field '61' is outside 0-59"),
    ("0 * * * * Funday", "bad day-of-week field"),
    ("*/0 * * * * *", "bad second field"),
    ("0 0 0 31 2 *", "never fires"),
])
def test_bad_schedules_are_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(text).next_after(at("2026-01-01 00:00:00"))
