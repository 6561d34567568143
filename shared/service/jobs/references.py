"""What submission checks against storage: everything a spec names must be there and usable.

The code snapshot exists, holds the entry script, and the entry script compiles (``compile()`` in
this process, never run; at most :data:`MAX_COMPILED_BYTES` of it); the environment resolves;
every model is registered (with a did-you-mean over the registered names); every input and side
input lists at least one blob (an empty input is an error, as an empty dataset is in Azure ML);
their containers exist, and so does an explicit output's (with a did-you-mean over the account's
containers). The service's own containers are refused.

Each check costs a bounded number of storage calls: one download of the snapshot, one query per
model, one List Blobs call of at most :data:`~shared.service.planning.fileinputs.PROBE_PAGE`
names per input, one call for the output; a did-you-mean reads one page of container names or
model rows, only when something is missing. Errors name the field (``inputs.1``,
``models.0``, ``entry_script``), as the schema's errors do, so one answer holds both.
"""

from __future__ import annotations

import difflib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared import environment
from shared.environment import Resolved
from shared.errors import IntegrityError, NotFoundError, SubmitterError
from shared.service.planning import fileinputs
from shared.service.working import models, snapshots
from shared.service.working.environments import Environments
from shared.settings import Settings
from shared.spec import InputSpec, JobSpec, SpecParts
from shared.storage import Storage

MAX_COMPILED_BYTES = 128 * 1024   # larger entry scripts are not compiled at submission (~50 MB, 0.1 s)
MAX_LISTED = 10                   # files of a folder an error lists
MAX_NAMES = 1000                  # container names or model rows a did-you-mean reads (one page)
HOST_CONTAINER_PREFIXES = ("azure-webjobs-", "scm-releases")   # the Functions host's, the account's

Error = dict[str, str]


@dataclass
class Checked:
    """What the checks found: model pins and content hashes, the resolved environment, and the
    errors (none: the references hold)."""

    pins: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    resolved: Resolved | None = None
    errors: list[Error] = field(default_factory=list)


def internal_names(settings: Settings) -> dict[str, str]:
    """Every name the service (or its host) keeps state under -> what it is, as settings name them.

    Queues and tables live in other namespaces than containers, but a container of the same name
    would be mistaken for them by a reader of the spec, so they are reserved as well."""
    names = {settings.requests_container: "the service's requests container",
             settings.system_container: "the service's system container (code snapshots, models)",
             settings.output_container: "the service's output container (every job's default "
                                        "output and logs)"}
    for queue in settings.queues:
        names.setdefault(queue, "a queue of the service")
        names.setdefault(queue + settings.poison_suffix, "a poison queue of the service")
    for table in settings.tables:
        names.setdefault(table.lower(), "a table of the service")
    return names


def _internal(settings: Settings, container: str) -> str | None:
    internal = internal_names(settings)
    if container in internal:
        return internal[container]
    if container.startswith(HOST_CONTAINER_PREFIXES):
        return "a container of the Functions host"
    return None


def reserved_name_errors(settings: Settings, spec: JobSpec | SpecParts) -> list[Error]:
    """Inputs, side inputs and output may not name the service's own containers, queues or
    tables (pure)."""
    parts = SpecParts.of(spec) if isinstance(spec, JobSpec) else spec
    named = [(f"{where}.container", item.container) for where, item in (*parts.inputs, *parts.side_inputs)]
    if parts.output is not None:
        named.append(("output", parts.output.container))
    errors = []
    for name, container in named:
        reason = _internal(settings, container)
        if reason:
            errors.append({"field": name, "message": f"container {container!r} is {reason}; "
                           "jobs may not read or write the service's own storage (see "
                           "docs/security.md, Internal names)"})
    return errors


def check(storage: Storage, parts: SpecParts, *, code: bool = True) -> Checked:
    """Check every reference of ``parts`` against storage; ``code`` False leaves the snapshot
    out (the CLI checks a local folder itself before uploading it)."""
    out = Checked(errors=reserved_name_errors(storage.settings, parts))
    refused = {e["field"] for e in out.errors}
    suggest = _Suggestions(storage)
    if code:
        _check_code(storage, parts, out)
    _check_models(storage, parts, out, suggest)
    for where, item in (*parts.inputs, *parts.side_inputs):
        if f"{where}.container" not in refused:
            _check_input(storage, where, item, out, suggest)
    out.errors = [{**e, "field": parts.rename(e["field"])} for e in out.errors]
    return out


class _Suggestions:
    """Did-you-mean over the account's containers and the registered models, each read (one
    page) the first time a name is missing."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._containers: list[str] | None = None
        self._models: list[str] | None = None

    def container(self, name: str) -> str:
        if self._containers is None:
            pages = self.storage.blob_service.list_containers(results_per_page=MAX_NAMES).by_page()
            listed: Iterable[Any] = next(pages, [])
            settings = self.storage.settings
            self._containers = [c.name for c in listed if _internal(settings, c.name) is None]
        return did_you_mean(name, self._containers)

    def model(self, name: str) -> str:
        if self._models is None:
            table = self.storage.table(self.storage.settings.models_table)
            pages = table.list_entities(select=["PartitionKey"], results_per_page=MAX_NAMES).by_page()
            self._models = list(dict.fromkeys(r["PartitionKey"] for r in next(pages, [])))
        return did_you_mean(name, self._models)


def did_you_mean(name: str, candidates: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``candidates`` (bounded by the caller), else ""."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def listing(names: list[str], limit: int = MAX_LISTED) -> str:
    """The first ``limit`` names, and how many more: ``a.py, b.py (and 3 more)``; "no files"."""
    if not names:
        return "no files"
    more = f" (and {len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def missing_entry_script(entry: str, where: str, files: list[str]) -> str:
    """The message for an entry script that is not in a folder or snapshot holding ``files``."""
    scripts = [f for f in files if f.endswith(".py")][:MAX_NAMES]
    return (f"{entry} is not in source_directory {where}{did_you_mean(entry, scripts)}; it holds "
            f"{len(files)} file(s): {listing(sorted(files))}")


def compile_error(source: bytes, name: str) -> str | None:
    """Why ``source`` does not compile as Python (file, line and message), or None. It is
    compiled, never run; the encoding is read from the source as Python reads it."""
    try:
        compile(source, name, "exec", dont_inherit=True)
    except SyntaxError as exc:
        text = (exc.text or "").strip()[:120]
        return (f"{name} does not compile: line {exc.lineno}: {exc.msg}"
                + (f": {text!r}" if text else ""))
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return f"{name} does not compile: {type(exc).__name__}: {exc}"[:400]
    return None


def _check_code(storage: Storage, parts: SpecParts, out: Checked) -> None:
    ref = parts.source_directory
    if ref is None or not ref.startswith(snapshots.PREFIX):
        out.errors.append({"field": "source_directory", "message": "must be a code snapshot "
                           "reference (snapshot:<sha256>); the CLI uploads a local folder and "
                           "fills this in"})
        return
    try:
        with snapshots.open_zip(storage, ref) as zf:
            if parts.entry_script is not None:
                problem = _entry_problem(zf, ref, parts.entry_script)
                if problem:
                    out.errors.append({"field": "entry_script", "message": problem})
            out.resolved = environment.resolve(parts.environment,
                                               lambda name: snapshots.read_text(zf, name))
        envs = Environments.for_settings(Path("."), storage.settings)
        why = envs.refusal(out.resolved) if out.resolved else None
        if why:
            out.errors.append({"field": "environment", "message": why})
    except (NotFoundError, IntegrityError) as exc:
        out.errors.append({"field": "source_directory", "message": str(exc)})
    except (environment.BadEnvironment, SubmitterError) as exc:
        out.errors.append({"field": "environment", "message": str(exc).removeprefix("environment: ")})


def _entry_problem(zf: zipfile.ZipFile, ref: str, entry: str) -> str | None:
    try:
        info = zf.getinfo(entry)
    except KeyError:
        return missing_entry_script(entry, ref, [n for n in zf.namelist() if not n.endswith("/")])
    if info.file_size > MAX_COMPILED_BYTES:
        return None     # too large to compile here: a syntax error shows at the first try
    with zf.open(info) as fh:
        return compile_error(fh.read(MAX_COMPILED_BYTES + 1), entry)


def _check_models(storage: Storage, parts: SpecParts, out: Checked, suggest: _Suggestions) -> None:
    for ref in parts.models:
        try:
            model = models.get_version(storage, ref.name, ref.version)
        except models.UnknownModel:
            out.errors.append({"field": ref.field, "message": f"model {ref.name!r} is not "
                               f"registered{suggest.model(ref.name)} (parallelrun model register "
                               f"{ref.name} PATH)"})
            continue
        except NotFoundError as exc:     # no such version
            out.errors.append({"field": ref.field, "message": str(exc)})
            continue
        out.pins[ref.name] = model.version
        out.hashes[ref.name] = model.sha256
        if not model.sha256:
            out.errors.append({"field": ref.field, "message": models.unhashed_message(model)})


def _check_input(storage: Storage, where: str, item: InputSpec, out: Checked,
                 suggest: _Suggestions) -> None:
    try:
        found = fileinputs.probe(storage, item)
    except ResourceNotFoundError:
        out.errors.append({"field": f"{where}.container", "message": f"container "
                           f"{item.container!r} does not exist{suggest.container(item.container)}"})
        return
    if found is False:
        out.errors.append({"field": where, "message": f"no blob matches {item.describe()}: an "
                           "input must name at least one file at submission (upload them first)"})
