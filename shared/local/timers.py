"""Timer triggers with the Functions host's semantics.

* The schedule is an NCRONTAB expression of six fields, ``{second} {minute} {hour} {day} {month}
  {day-of-week}``, in UTC (as the host without ``WEBSITE_TIME_ZONE``): numbers, ``*``, ranges
  ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n``, lists ``a,b``, and month and weekday names
  (``Jan``, ``Mon``; Sunday is 0). As in NCRONTAB, a time matches when the day of the month *and*
  the day of the week match. TimeSpan schedules (``hh:mm:ss``, App Service plans only) are refused.
* One instance runs a given occurrence: each node that reaches it takes a blob lease on the
  timer's status blob (``<system container>/local-host/timers/<function>/status``); the holder
  records the occurrence as its last run there and runs the function, renewing the lease; a node
  that finds the lease taken, or the occurrence already recorded, skips it.
* ``useMonitor``: a node that starts after an occurrence the status blob expected (no node was up
  then) runs it once, late, with ``past_due`` true. ``runOnStartup`` runs the function whenever a
  node starts.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobClient, BlobLeaseClient

from shared.local.cpustats import stage
from shared.local.invocation import FunctionSpec, StatsBook, resolve_expression
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger("parallelrun.local.timers")

LEASE_S = 15                      # blob leases are 15-60 s (or infinite)
_NAMES = {
    4: {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m},
    5: {d.lower(): i for i, d in enumerate(("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"))},
}
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_FIELDS = ("second", "minute", "hour", "day", "month", "day-of-week")
_SEARCH_DAYS = 366 * 28           # a leap day on a given weekday comes round within 28 years


@dataclass(frozen=True)
class Schedule:
    """A parsed six-field NCRONTAB expression."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]   # 0 = Sunday

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first occurrence strictly after ``after`` (an aware datetime; returned in UTC)."""
        start = after.astimezone(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if (day.month in self.months and day.day in self.days
                    and (day.isoweekday() % 7) in self.weekdays):
                for h in self.hours:
                    for m in self.minutes:
                        for s in self.seconds:
                            at = dt.datetime(day.year, day.month, day.day, h, m, s, tzinfo=dt.UTC)
                            if at >= start:
                                return at
            day += dt.timedelta(days=1)
        raise ValueError(f"schedule {self.text!r} never fires")


def parse_schedule(text: str) -> Schedule:
    """Parse an NCRONTAB expression; raises ValueError naming the bad field."""
    parts = str(text).split()
    if re.fullmatch(r"\s*(\d+\.)?\d{1,2}:\d{1,2}:\d{1,2}\s*", str(text)):
        raise ValueError(f"schedule {text!r}: TimeSpan schedules are not supported by the local "
                         "host (nor on Consumption and Flex Consumption plans); use NCRONTAB")
    if len(parts) != 6:
        raise ValueError(f"schedule {text!r}: an NCRONTAB expression has six fields ({{second}} "
                         f"{{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}), not {len(parts)}")
    values = [_parse_field(p, n, text) for n, p in enumerate(parts)]
    if not values[1] or not values[0] or not values[2]:
        raise ValueError(f"schedule {text!r} never fires")
    return Schedule(text, tuple(sorted(values[0])), tuple(sorted(values[1])),
                    tuple(sorted(values[2])), frozenset(values[3]), frozenset(values[4]),
                    frozenset(values[5]))


def _parse_field(part: str, n: int, text: str) -> set[int]:
    lo, hi = _BOUNDS[n]
    out: set[int] = set()
    for item in part.split(","):
        body, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if step < 1:
                raise ValueError
            if body == "*":
                a, b = lo, hi
            elif "-" in body:
                a, b = (_value(v, n) for v in body.split("-", 1))
            else:
                a = _value(body, n)
                b = hi if step_text else a
        except ValueError:
            raise ValueError(f"schedule {text!r}: bad {_FIELDS[n]} field {part!r}") from None
        if not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise ValueError(f"schedule {text!r}: {_FIELDS[n]} field {part!r} is outside "
                             f"{lo}-{hi}")
        out.update(range(a, b + 1, step))
    return out


def _value(text: str, n: int) -> int:
    names = _NAMES.get(n, {})
    key = text.strip().lower()
    return names[key] if key in names else int(key)


class TimerTrigger:
    """Runs one timer-triggered function on its schedule, on one node of the cluster at a time."""

    def __init__(self, spec: FunctionSpec, storage: Storage, settings: Settings, stats: StatsBook,
                 *, node_id: str, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.spec = spec
        self.node_id = node_id
        self.schedule = parse_schedule(resolve_expression(settings, str(spec.trigger["schedule"])))
        self.run_on_startup = bool(spec.trigger.get("runOnStartup", False))
        self.use_monitor = bool(spec.trigger.get("useMonitor", True))
        self._stats = stats
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._blob: BlobClient = storage.container(settings.system_container).get_blob_client(
            f"local-host/timers/{spec.name}/status")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"timer-{spec.name}", daemon=True)
        self.runs = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def set_fast(self, fast: bool) -> None:   # a timer keeps its schedule while draining
        pass

    def pending(self) -> int:
        return 0

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            if self.run_on_startup:
                self.fire(self._clock(), past_due=False, once_per_occurrence=False)
            if self.use_monitor:
                expected = self._status().get("next")
                if expected and dt.datetime.fromisoformat(expected) < self._clock():
                    self.fire(dt.datetime.fromisoformat(expected), past_due=True)
        except Exception:   # noqa: BLE001 - the schedule goes on
            log.exception("timer %s: startup run failed", self.spec.name)
        while not self._stop.is_set():
            occurrence = self.schedule.next_after(self._clock())
            while not self._stop.is_set():
                left = (occurrence - self._clock()).total_seconds()
                if left <= 0:
                    break
                self._stop.wait(min(left, 1.0))
            if self._stop.is_set():
                return
            try:
                self.fire(occurrence, past_due=False)
            except Exception:   # noqa: BLE001 - storage trouble: the next occurrence tries again
                log.exception("timer %s: occurrence %s failed", self.spec.name,
                              occurrence.isoformat())

    def fire(self, occurrence: dt.datetime, *, past_due: bool,
             once_per_occurrence: bool = True) -> bool:
        """Run the function for ``occurrence`` unless another node holds the timer or already ran
        this occurrence; returns whether it ran here."""
        with stage("timer: lease"):
            lease = self._acquire()
        if lease is None:
            log.debug("timer %s: %s runs elsewhere", self.spec.name, occurrence.isoformat())
            return False
        renewing = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(lease, renewing), daemon=True)
        try:
            with stage("timer: status"):
                status = self._status()
                last = status.get("last")
                if once_per_occurrence and last and dt.datetime.fromisoformat(last) >= occurrence:
                    return False
                self._write_status(lease, {
                    "last": occurrence.isoformat(), "by": self.node_id,
                    "next": self.schedule.next_after(max(occurrence, self._clock())).isoformat()})
            renewer.start()
            self._invoke(past_due, status)
            return True
        finally:
            renewing.set()
            if renewer.is_alive():
                renewer.join()
            try:
                with stage("timer: lease"):
                    lease.release()
            except AzureError as exc:   # it expires by itself
                log.info("timer %s: lease release failed: %s", self.spec.name, exc)

    def _invoke(self, past_due: bool, status: dict[str, str]) -> None:
        self.runs += 1
        self._stats.add(self.spec.name, invocations=1)
        request = TimerRequest(past_due=past_due, schedule_status={
            "Last": status.get("last", ""), "Next": status.get("next", "")},
            schedule={"AdjustForDST": False})
        try:
            self.spec.invoke(request)
        except Exception:   # noqa: BLE001 - as the host: logged, and the schedule goes on
            self._stats.add(self.spec.name, failures=1)
            log.exception("timer function %s failed", self.spec.name)
            return
        self._stats.add(self.spec.name, successes=1)

    # -- the status blob -------------------------------------------------------------------
    def _acquire(self) -> BlobLeaseClient | None:
        try:
            self._blob.upload_blob(b"{}", overwrite=False)
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            if exc.status_code != 412:   # leased by another node while we looked
                raise
        try:
            return self._blob.acquire_lease(lease_duration=LEASE_S)
        except HttpResponseError as exc:
            if exc.status_code == 409:   # LeaseAlreadyPresent: another node runs it
                return None
            raise

    def _status(self) -> dict[str, str]:
        try:
            data = json.loads(self._blob.download_blob().readall() or b"{}")
        except (ValueError, ResourceExistsError):
            return {}
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return {}
            raise
        return data if isinstance(data, dict) else {}

    def _write_status(self, lease: BlobLeaseClient, status: dict[str, str]) -> None:
        self._blob.upload_blob(json.dumps(status).encode(), overwrite=True, lease=lease)

    def _renew(self, lease: BlobLeaseClient, done: threading.Event) -> None:
        while not done.wait(LEASE_S / 3):
            try:
                with stage("timer: lease"):
                    lease.renew()
            except AzureError as exc:
                log.warning("timer %s: lease renewal failed: %s", self.spec.name, exc)
