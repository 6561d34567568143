"""Size limits on everything a submitter sends: bodies, specs, code snapshots.

One frozen :class:`Limits` (a part of :class:`~shared.settings.Settings`) applies alike to the HTTP
API, the blob-upload submissions and the CLI. Every limit is an app setting; the defaults below are
the documented ones (docs/security.md, "Limits"). A refusal names the field and the setting.

The spec limits are checked in this order, so that no step costs more than the input's size allows:
the body's size, its nesting depth (a pre-scan of the text), the length of each integer literal
(while parsing), then - on the parsed value, before validation - the length of every string, the
number of entries of every list and mapping, and the number of values in all; last, the normalised
spec's size, which must fit in its ledger row (an Azure Table entity holds at most 1 MiB, 64 KiB per
property).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from shared.errors import SpecError

# app setting -> Limits field
LIMIT_SETTINGS: dict[str, str] = {
    "PARALLELRUN_MAX_BODY_BYTES": "max_body_bytes",
    "PARALLELRUN_MAX_SPEC_DEPTH": "max_spec_depth",
    "PARALLELRUN_MAX_INT_DIGITS": "max_int_digits",
    "PARALLELRUN_MAX_STRING_CHARS": "max_string_chars",
    "PARALLELRUN_MAX_ITEMS": "max_items",
    "PARALLELRUN_MAX_FILES": "max_files",
    "PARALLELRUN_MAX_SPEC_CHARS": "max_spec_chars",
    "PARALLELRUN_MAX_SNAPSHOT_BYTES": "max_snapshot_bytes",
    "PARALLELRUN_MAX_SNAPSHOT_MEMBERS": "max_snapshot_members",
    "PARALLELRUN_MAX_SNAPSHOT_EXPANDED_BYTES": "max_snapshot_expanded_bytes",
}


@dataclass(frozen=True)
class Limits:
    """What a submission may be at most. Defaults are the documented ones."""

    max_body_bytes: int = 1024 * 1024          # a job spec (JSON/YAML body, request blob, spec file)
    max_spec_depth: int = 32                    # nesting of lists and mappings in a spec
    max_int_digits: int = 20                    # digits of an integer literal in a spec
    max_string_chars: int = 8192                # any string in a spec (description, arguments, ...)
    max_items: int = 1000                       # entries of any list or mapping except `files`
    max_files: int = 10_000                     # entries of one input's `files` list
    max_spec_chars: int = 300_000               # the normalised spec as JSON (it lives in a table row)
    max_snapshot_bytes: int = 200 * 1024 * 1024           # a zipped source_directory
    max_snapshot_members: int = 10_000                     # files in a snapshot
    max_snapshot_expanded_bytes: int = 1024 * 1024 * 1024  # a snapshot's files, uncompressed

    @property
    def max_values(self) -> int:
        """Values in a whole spec (bounds the walk over YAML aliases, which may share subtrees)."""
        return 4 * (self.max_files + self.max_items)

    @property
    def max_request_bytes(self) -> int:
        """The largest body any route accepts (the local HTTP server refuses more before reading it)."""
        return max(self.max_body_bytes, self.max_snapshot_bytes)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        values: dict[str, int] = {}
        for name, field in LIMIT_SETTINGS.items():
            if env.get(name):
                try:
                    values[field] = int(env[name])
                except ValueError:
                    raise ValueError(f"app setting {name} must be an integer, not {env[name]!r}") \
                        from None
                if values[field] < 1:
                    raise ValueError(f"app setting {name} must be at least 1, not {values[field]}")
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        return {name: str(getattr(self, field)) for name, field in LIMIT_SETTINGS.items()}

    def setting(self, field: str) -> str:
        """The app setting of a field, for messages: ``max_files`` -> ``PARALLELRUN_MAX_FILES``."""
        return next(name for name, f in LIMIT_SETTINGS.items() if f == field)


# -- a spec as text: size, depth pre-scan, integer length, then parse ---------------------------
# a string (its closing quote optional, so a match never fails and never backtracks) or a bracket
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def _refuse(field: str, message: str) -> SpecError:
    return SpecError([{"field": field, "message": message}])


def load_text(data: str | bytes, limits: Limits) -> Any:
    """A spec's JSON or YAML text as data, refused (SpecError naming the limit) before it costs more
    than its size allows: too many bytes, nested too deep, or an integer too long."""
    check_spec_bytes(len(data.encode("utf-8")) if isinstance(data, str) else len(data), limits)
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _refuse("(spec)", "the job spec is not UTF-8 text") from None
    if data.lstrip()[:1] in ("{", "["):
        _check_json_depth(data, limits)
        try:
            return json.loads(data, parse_int=lambda s: _int(s, limits))
        except ValueError:
            pass   # not JSON: YAML (a superset) gives the better message
        except RecursionError:
            raise _too_deep(limits) from None
    loader = None
    try:
        _scan_yaml(data, limits)
        loader = _YamlLoader(data, limits)
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise _refuse("(spec)", f"not valid JSON or YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, RecursionError) as exc:
        raise _refuse("(spec)", f"not a valid YAML value: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def check_spec_bytes(size: int, limits: Limits) -> None:
    """Refuse a spec of ``size`` bytes over the body limit (before reading it, where size is known)."""
    if size > limits.max_body_bytes:
        raise _refuse("(spec)", f"the job spec is {size:,} bytes; at most {limits.max_body_bytes:,} "
                      f"are accepted ({limits.setting('max_body_bytes')})")


def _too_deep(limits: Limits, field: str = "(spec)") -> SpecError:
    return _refuse(field, f"nested more than {limits.max_spec_depth} deep "
                          f"({limits.setting('max_spec_depth')})")


def _check_json_depth(text: str, limits: Limits) -> None:
    """Refuse JSON text whose brackets nest deeper than the limit (strings are skipped)."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text):   # linear: each character is read once
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limits.max_spec_depth:
                raise _too_deep(limits)
        elif token in ("]", "}"):
            depth -= 1


def _int(text: str, limits: Limits) -> int:
    digits = len(text.lstrip("+-").replace("_", ""))
    if digits > limits.max_int_digits:
        raise _refuse("(spec)", f"an integer of {digits:,} digits; at most {limits.max_int_digits} "
                                f"are accepted ({limits.setting('max_int_digits')})")
    return int(text)


_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when installed


def _scan_yaml(text: str, limits: Limits) -> None:
    """Refuse YAML nested too deep, with too many entries in a list or mapping or too many values
    in all, from its parse events alone (nothing is built yet; libyaml's parser does not recurse)."""
    stack: list[list[Any]] = []        # per open collection: [is mapping, nodes so far, key/index]
    values, bound = 0, max(limits.max_items, limits.max_files)
    for event in yaml.parse(text, Loader=_BASE_LOADER):
        if isinstance(event, yaml.CollectionEndEvent):
            stack.pop()
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        values += 1
        if values > limits.max_values:
            raise _refuse("(spec)", f"more than {limits.max_values:,} values")
        if stack:
            frame = stack[-1]
            if frame[0] and frame[1] % 2 == 0:
                frame[2] = event.value if isinstance(event, yaml.ScalarEvent) else "?"
            elif not frame[0]:
                frame[2] = frame[1]
            frame[1] += 1
            entries = (frame[1] + 1) // 2 if frame[0] else frame[1]
            if entries > bound:
                field = ".".join(str(f[2]) for f in stack[:-1]) or "(spec)"
                raise _refuse(field, f"more than {bound:,} entries ({limits.setting('max_items')}, "
                                     f"{limits.setting('max_files')} for files)")
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= limits.max_spec_depth:
                raise _too_deep(limits)
            stack.append([isinstance(event, yaml.MappingStartEvent), 0, None])


class _YamlLoader(_BASE_LOADER):
    """The safe loader with the integer-length limit."""

    def __init__(self, stream: str, limits: Limits) -> None:
        super().__init__(stream)
        self.limits = limits

    def construct_yaml_int(self, node: Any) -> int:
        _int(str(self.construct_scalar(node)).replace(":", ""), self.limits)
        return super().construct_yaml_int(node)


_YamlLoader.add_constructor("tag:yaml.org,2002:int", _YamlLoader.construct_yaml_int)


# -- a spec as data: strings, entries, values, depth -------------------------------------------
def check_value(value: Any, limits: Limits) -> None:
    """Refuse parsed spec data with an over-long string, too many entries somewhere, too many
    values in all, too deep a nesting or too long an integer; every error names its field."""
    errors: list[dict[str, str]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    seen, int_bound = 0, 10 ** limits.max_int_digits
    while stack and len(errors) < 20:
        path, item = stack.pop()
        seen += 1
        if seen > limits.max_values:
            errors.append({"field": "(spec)", "message": f"more than {limits.max_values:,} values"
                           f" (4 x ({limits.setting('max_files')} + {limits.setting('max_items')}))"})
            break
        field = ".".join(map(str, path)) or "(spec)"
        if isinstance(item, str):
            if len(item) > limits.max_string_chars:
                errors.append({"field": field, "message": f"{len(item):,} characters; at most "
                               f"{limits.max_string_chars:,} ({limits.setting('max_string_chars')})"})
        elif isinstance(item, int) and not isinstance(item, bool):
            if abs(item) >= int_bound:
                errors.append({"field": field, "message": f"integers have at most "
                               f"{limits.max_int_digits} digits ({limits.setting('max_int_digits')})"})
        elif isinstance(item, (list, tuple, dict)):
            if len(path) >= limits.max_spec_depth:
                errors.append(_too_deep(limits, field).errors[0])
                continue
            bound = "max_files" if _is_files(path) else "max_items"
            if len(item) > getattr(limits, bound):
                errors.append({"field": field, "message": f"{len(item):,} entries; at most "
                               f"{getattr(limits, bound):,} ({limits.setting(bound)})"})
                continue
            if isinstance(item, dict):
                for key, sub in item.items():
                    key = str(key)
                    if len(key) > limits.max_string_chars:
                        errors.append({"field": field, "message": "a key of "
                                       f"{len(key):,} characters ({limits.setting('max_string_chars')})"})
                        continue
                    stack.append(((*path, key), sub))
            else:
                stack.extend(((*path, i), sub) for i, sub in enumerate(item))
    if errors:
        raise SpecError(sorted(errors, key=lambda e: e["field"]))


def _is_files(path: tuple[str | int, ...]) -> bool:
    return len(path) == 3 and path[0] == "inputs" and path[2] == "files"


def check_spec_size(normalised: Mapping[str, Any], limits: Limits) -> None:
    """Refuse a spec too large for its ledger row once normalised."""
    chars = len(json.dumps(normalised, separators=(",", ":")))
    if chars > limits.max_spec_chars:
        raise _refuse("(spec)", f"the normalised spec is {chars:,} characters; at most "
                      f"{limits.max_spec_chars:,} fit in its job row "
                      f"({limits.setting('max_spec_chars')}); list inputs by prefix or glob")
