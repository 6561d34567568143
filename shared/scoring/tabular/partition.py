"""Partition values from a file's path: Hive-style folders, or PRS's ``partition_format``.

* Without a format, every folder named ``key=value`` is a partition (``Store=2/Brand=x/part.parquet``
  gives ``{"Store": "2", "Brand": "x"}``); values are percent-decoded as Hive/Spark escape them,
  other folders are ignored, and a path without such folders has no partitions.
* With a format, ``{name}`` matches one path segment's text and ``{name:yyyy/MM/dd}`` a date laid out
  with ``yyyy``, ``MM``, ``dd``, ``HH``, ``mm``, ``ss`` (its value is returned in ISO form,
  ``2019-01-01T00:00:00``); everything else is literal. As in PRS, the format describes the end of
  the path: it must match the path's last segments (relative to the input's prefix, a leading "/"
  being optional). A name used twice must match the same text. A path that does not match is a
  :class:`ValueError` naming the path and the format.
"""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import unquote

from shared.scoring.tabular.formats import TabularDataError

_PLACEHOLDER = re.compile(r"\{([^{}:]*)(?::([^{}]*))?\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .-]*$")
_DATE_TOKENS = {"yyyy": ("year", r"\d{4}"), "MM": ("month", r"\d{2}"), "dd": ("day", r"\d{2}"),
                "HH": ("hour", r"\d{2}"), "mm": ("minute", r"\d{2}"), "ss": ("second", r"\d{2}")}
_DATE_TOKEN = re.compile("|".join(_DATE_TOKENS))


def parse_partition(path: str, partition_format: str | None = None) -> dict[str, str]:
    """The partition values of ``path`` (relative to its input's prefix): see the module doc."""
    if partition_format is None:
        return _hive(path)
    pattern, strings, dates = _compile(partition_format)
    match = pattern.search(path.lstrip("/"))
    if not match:
        raise TabularDataError(f"path {path!r} does not match partition_format {partition_format!r}")
    values = {name: match.group(group) for group, name in strings.items()}
    for name, tokens in dates.items():
        parts = {field: int(match.group(group)) for group, field in tokens}
        try:
            values[name] = datetime(parts.get("year", 1), parts.get("month", 1), parts.get("day", 1),
                                    parts.get("hour", 0), parts.get("minute", 0),
                                    parts.get("second", 0)).isoformat()
        except ValueError as exc:
            raise TabularDataError(f"path {path!r}: {name} is not a valid date ({exc})") from None
    return values


def _hive(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for folder in path.strip("/").split("/")[:-1]:
        key, eq, value = folder.partition("=")
        if eq and key:
            values[unquote(key)] = unquote(value)
    return values


def _compile(fmt: str) -> tuple[re.Pattern[str], dict[str, str],
                                 dict[str, list[tuple[str, str]]]]:
    """A partition format's regex, its text placeholders (group -> name) and, for each date
    placeholder, its (group, field) pairs."""
    regex: list[str] = []
    seen: set[str] = set()
    strings: dict[str, str] = {}
    dates: dict[str, list[tuple[str, str]]] = {}
    pos = 0
    body = fmt.lstrip("/")
    for m in _PLACEHOLDER.finditer(body):
        regex.append(_literal(body[pos:m.start()], fmt))
        name, layout = m.group(1), m.group(2)
        if not _NAME.match(name):
            raise TabularDataError(f"partition_format {fmt!r}: {{{name}}} is not a column name")
        if name in seen:
            if name in dates:
                raise TabularDataError(f"partition_format {fmt!r}: date {{{name}}} is used twice")
            regex.append(f"(?P={_group(name)})")
        elif layout is None:
            strings[_group(name)] = name
            regex.append(f"(?P<{_group(name)}>[^/]+?)")
        else:
            regex.append(_date(name, layout, fmt, dates))
        seen.add(name)
        pos = m.end()
    regex.append(_literal(body[pos:], fmt))
    if not seen:
        raise TabularDataError(f"partition_format {fmt!r} names no partition ({{name}})")
    return re.compile("(?:^|(?<=/))" + "".join(regex) + "$"), strings, dates


def _literal(text: str, fmt: str) -> str:
    if "{" in text or "}" in text:
        raise TabularDataError(f"partition_format {fmt!r}: unbalanced braces")
    return re.escape(text)


def _group(name: str) -> str:
    """A regex group name for a column name (column names may hold characters groups may not)."""
    return "p" + "".join(c if c.isalnum() and c.isascii() else f"_{ord(c):x}_" for c in name)


def _date(name: str, layout: str, fmt: str, dates: dict[str, list[tuple[str, str]]]) -> str:
    tokens: list[tuple[str, str]] = []
    out, pos = [], 0
    for m in _DATE_TOKEN.finditer(layout):
        out.append(re.escape(layout[pos:m.start()]))
        field, digits = _DATE_TOKENS[m.group(0)]
        group = f"_{len(dates)}_{field}"
        if any(f == field for _, f in tokens):
            raise TabularDataError(f"partition_format {fmt!r}: {{{name}}} repeats {m.group(0)}")
        tokens.append((group, field))
        out.append(f"(?P<{group}>{digits})")
        pos = m.end()
    out.append(re.escape(layout[pos:]))
    if not tokens:
        raise TabularDataError(f"partition_format {fmt!r}: {{{name}:{layout}}} has none of "
                               f"yyyy, MM, dd, HH, mm, ss")
    dates[name] = tokens
    return "".join(out)
