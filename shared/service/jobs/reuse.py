"""``allow_reuse`` as PRS has it: a job whose code, models, environment, side inputs, parameters
and inputs are those of an earlier succeeded job finishes at once with that job's output.

**The fingerprint** (docs/job-spec.md lists it field by field) is made of two parts:

* the *static* part, computed at submission and kept in the job row (:func:`fingerprint`): the code
  snapshot (content-addressed), each pinned model version and its content hash, the environment's
  resolved requirements, each file side input's listing (names, ETags, sizes) and every spec field
  that can change the results (:data:`NOT_FINGERPRINTED` are the fields that cannot). Its hash,
  ``key``, finds candidates: the finalizer of a succeeded job records ``key -> job`` in the job
  index (:func:`record_success`);
* the *inputs* as listed now: each planner listing step writes one ledger row of the page's blobs
  (a short hash of each name and of its name, ETag and size; :func:`listing_row`). A new job with a
  candidate lists its inputs once (page by page, one candidate row in memory at a time) and
  compares (:func:`compare`): nothing added, removed or rewritten means reuse.

**Why not** is always said: "allow_reuse is false", the inputs that changed (with an example),
or, against the most recent succeeded job of the same name, which parts differ.

**Races**: two identical jobs submitted together both run (a candidate is a job that has
*succeeded*), as Azure ML does with two pipeline runs submitted at once; each writes its own
output (or one owns an explicit output: :mod:`claims`), never half of one.

Everything here is idempotent: the decision is taken again when a planner step is redone, a
reused job's copy overwrites the same blobs, and the records are upserts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.errors import NotFoundError
from shared.service.jobs.status import replaced
from shared.service.ledger.rows import JobRow, get_long, put_long
from shared.service.ledger.store import Ledger
from shared.service.planning import fileinputs
from shared.spec import InputSpec, JobSpec
from shared.storage import Storage, blob_path

log = logging.getLogger("parallelrun.reuse")

# spec fields that cannot change the results (or are fingerprinted by content instead: the code
# snapshot, the models' pinned versions, the environment's requirements)
NOT_FINGERPRINTED = frozenset({
    "name", "description", "node_count", "process_count_per_node", "logging_level",
    "run_invocation_timeout", "allow_reuse", "output", "compute_target",
    "source_directory", "models", "environment"})
BY_KEY = "reuse"                 # index table partition: fingerprint key -> the job that succeeded
BY_NAME = "reuse-name"           # index table partition: job name -> its latest succeeded job
LISTING_PREFIX = "l-"            # ledger rows of a job's listed inputs, one per planner step
HASH_CHARS = 8                   # of a name's and of an item's hash (48 bits each)
HEAD_THREADS = 16                # HEAD requests in flight for an explicit list of files
COPY_WAIT_S = 600.0              # a server-side copy still pending after this fails the reuse
EXAMPLES = 3


def _h(*parts: object) -> str:
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()
    return base64.b64encode(digest[:6], b"-_").decode()


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# -- the static part ---------------------------------------------------------------------------

def params(spec: JobSpec) -> dict[str, Any]:
    """The spec fields in the fingerprint, with their defaults filled in (an omitted field and
    its default written out are the same)."""
    data = spec.model_dump(mode="json")
    return {k: data[k] for k in sorted(data) if k not in NOT_FINGERPRINTED}


def fingerprint(storage: Storage, spec: JobSpec, pins: dict[str, int], hashes: dict[str, str]
                ) -> dict[str, Any]:
    """The static part of the job's fingerprint (``key`` is its hash)."""
    env = spec.environment if isinstance(spec.environment, dict) else {}
    parts: dict[str, Any] = {
        "code": spec.source_directory or "",
        "models": {name: f"{version}:{hashes.get(name, '')}" for name, version in sorted(pins.items())},
        "environment": list(env.get("pip", [])),
        "side_inputs": {s.name: _side_digest(storage, s.source) for s in spec.side_inputs or []
                        if s.model is None},
        "params": _digest(params(spec)),
    }
    parts["key"] = _digest(parts)
    return parts


def _side_digest(storage: Storage, source: InputSpec) -> str:
    h = hashlib.sha256()
    for name, etag, size in _entries(storage, source):
        h.update(f"{name}\0{etag}\0{size}\n".encode())
    return h.hexdigest()


def _entries(storage: Storage, source: InputSpec) -> Iterator[tuple[str, str, int]]:
    token: str | None = None
    while True:
        names, token, props = fileinputs.list_page(storage, source, token)
        yield from zip(names, *zip(*(props if props is not None else head_props(storage, source, names))))
        if token is None:
            return


def head_props(storage: Storage, source: InputSpec, names: Sequence[str]) -> list[tuple[str, int]]:
    """ETag and size of each of ``names`` (an explicit list, which is not listed): HEADs in
    parallel; a missing file is ("", -1), which no existing blob matches."""
    container = storage.container(source.container)

    def one(name: str) -> tuple[str, int]:
        try:
            p = container.get_blob_client(name).get_blob_properties()
            return str(p.etag).strip('"'), int(p.size)
        except ResourceNotFoundError:
            return "", -1

    if not names:
        return []
    with ThreadPoolExecutor(max_workers=min(HEAD_THREADS, len(names))) as pool:
        return list(pool.map(one, names))


# -- the inputs as listed ----------------------------------------------------------------------

def order_key(input_spec: InputSpec, position: int, name: str) -> str:
    """What orders an input's items: the name for a listing (lexicographic, as listed), the
    position for an explicit list of files."""
    return f"#{position:012d}" if input_spec.files is not None else name


def listing_row(job_id: str, step: int, input_index: int, first: str, last: str,
                names: Sequence[str], props: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """The ledger row of one listing step's page: per blob, the hash of its name and the hash of
    its name, ETag and size (16 characters)."""
    entries = "".join(_h(input_index, n) + _h(input_index, n, e, s) for n, (e, s) in zip(names, props))
    entity: dict[str, Any] = {"PartitionKey": job_id, "RowKey": f"{LISTING_PREFIX}{step:06d}",
                              "input": input_index, "first": first, "last": last, "count": len(names)}
    put_long(entity, "entries", entries)
    return entity


@dataclass
class _Page:
    input: int
    first: str
    last: str
    hashes: dict[str, str]           # name hash -> item hash
    matched: int = 0


def _pages(ledger: Ledger, job_id: str) -> Iterator[_Page]:
    """The candidate's listing rows in order, a few at a time."""
    query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
    for e in ledger.table.query_entities(query, parameters={"pk": job_id, "lo": LISTING_PREFIX,
                                                            "hi": "l."}, results_per_page=4):
        text = get_long(e, "entries")
        hashes = {text[i:i + HASH_CHARS]: text[i + HASH_CHARS:i + 2 * HASH_CHARS]
                  for i in range(0, len(text), 2 * HASH_CHARS)}
        yield _Page(int(e["input"]), str(e["first"]), str(e["last"]), hashes)


@dataclass
class Diff:
    added: int = 0
    changed: int = 0
    removed: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def describe(self, since: str) -> str:
        n = self.added + self.changed + self.removed
        what = ", ".join(f"{k} {w}" for k, w in ((self.added, "added"), (self.changed, "rewritten"),
                                                  (self.removed, "removed")) if k)
        eg = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{n} input blob{'s' if n != 1 else ''} changed since job {since} ({what}{eg})"


def compare(storage: Storage, ledger: Ledger, spec: JobSpec, candidate: str) -> Diff:
    """The job's inputs as listed now against ``candidate``'s listing rows: a merge in listing
    order, one page of each side in memory."""
    diff = Diff()
    pages = _pages(ledger, candidate)
    cur = next(pages, None)
    for index, item in enumerate(spec.inputs):
        token: str | None = None
        position = 0
        while True:
            names, token, props = fileinputs.list_page(storage, item, token,
                                                       storage.settings.plan_page_size)
            if props is None:
                props = head_props(storage, item, names)
            for name, (etag, size) in zip(names, props):
                key = order_key(item, position, name)
                position += 1
                while cur is not None and (cur.input < index or (cur.input == index and key > cur.last)):
                    diff.removed += len(cur.hashes) - cur.matched
                    cur = next(pages, None)
                nh, ih = _h(index, name), _h(index, name, etag, size)
                known = (cur.hashes.get(nh) if cur is not None and cur.input == index
                         and cur.first <= key else None)
                if known is not None:
                    cur.matched += 1    # type: ignore[union-attr]
                    if known == ih:
                        continue
                    diff.changed += 1
                else:
                    diff.added += 1
                if len(diff.examples) < EXAMPLES:
                    diff.examples.append(f"{item.container}/{name}")
            if token is None:
                break
    while cur is not None:
        diff.removed += len(cur.hashes) - cur.matched
        cur = next(pages, None)
    return diff


# -- deciding ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    reuse: JobRow | None      # the succeeded job whose output this job takes
    note: str                 # "reused job X: ..." or "not reused: ..."


def decide(storage: Storage, ledger: Ledger, job: JobRow) -> Decision:
    spec = job.spec
    if not spec.allow_reuse:
        return Decision(None, "not reused: allow_reuse is false")
    fp = job.fingerprint
    if not fp.get("key"):
        return Decision(None, "not reused: the job has no fingerprint")
    candidate = _recorded(storage, ledger, BY_KEY, fp["key"], job.job_id)
    if candidate is not None:
        if replaced(storage, candidate):
            return Decision(None, f"not reused: job {candidate.job_id}'s output was replaced by "
                                  f"job {replaced(storage, candidate)}")
        diff = compare(storage, ledger, spec, candidate.job_id)
        if diff.same:
            return Decision(candidate, f"reused job {candidate.job_id}: same code, models, "
                                       "environment, inputs and parameters")
        return Decision(None, f"not reused: {diff.describe(candidate.job_id)}")
    other = _recorded(storage, ledger, BY_NAME, _h("name", job.name), job.job_id) if job.name else None
    if other is None:
        return Decision(None, "not reused: no earlier succeeded job has the same code, models, "
                              "environment and parameters")
    return Decision(None, f"not reused: {'; '.join(differences(other, job)) or 'it differs'} "
                          f"(compared with job {other.job_id}, the last that succeeded of this name)")


def _recorded(storage: Storage, ledger: Ledger, partition: str, key: str, own: str) -> JobRow | None:
    try:
        row = storage.table(storage.settings.index_table).get_entity(partition, key)
        found = ledger.get_job(str(row["job_id"])) if row["job_id"] != own else None
    except (ResourceNotFoundError, NotFoundError):
        return None
    return found if found is not None and found.state == "succeeded" and found.has_spec else None


def differences(old: JobRow, new: JobRow) -> list[str]:
    """What differs between two jobs' static fingerprints, in words (old → new)."""
    a, b = old.fingerprint, new.fingerprint
    out = []
    if a.get("code") != b.get("code"):
        out.append(f"the code changed ({_short(a.get('code'))} → {_short(b.get('code'))})")
    models_a, models_b = a.get("models", {}), b.get("models", {})
    for name in sorted(set(models_a) | set(models_b)):
        va, vb = models_a.get(name), models_b.get(name)
        if va == vb:
            continue
        if va is None or vb is None:
            out.append(f"model {name} {'added' if va is None else 'removed'}")
        elif va.split(":")[0] != vb.split(":")[0]:
            out.append(f"model {name}: version {va.split(':')[0]} → {vb.split(':')[0]}")
        else:
            out.append(f"model {name}: its content changed")
    if a.get("environment") != b.get("environment"):
        out.append(f"environment differs ({_value(a.get('environment'))} → {_value(b.get('environment'))})")
    for name in sorted(set(a.get("side_inputs", {})) | set(b.get("side_inputs", {}))):
        if a.get("side_inputs", {}).get(name) != b.get("side_inputs", {}).get(name):
            out.append(f"side input {name} changed")
    pa, pb = params(old.spec), params(new.spec)
    for key in sorted(set(pa) | set(pb)):
        if pa.get(key) != pb.get(key):
            out.append(f"{key} differ{'' if key.endswith('s') else 's'} "
                       f"({_value(pa.get(key))} → {_value(pb.get(key))})")
    return out


def _short(snapshot: Any) -> str:
    return str(snapshot or "none").removeprefix("snapshot:")[:12]


def _value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        text = " ".join(str(v) for v in value) or "[]"
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# -- recording and taking over ------------------------------------------------------------------

def record_success(storage: Storage, job: JobRow) -> None:
    """After a job succeeded: it is the candidate for its fingerprint and the latest of its
    name. A job whose inputs were not all fingerprinted (an explicit list of files with
    allow_reuse false: not looked at) is recorded by name only. A job that reused another never
    listed its inputs, so the next one could not be compared with it: the job it reused stays
    the candidate (recorded again, in case that record was lost)."""
    if not job.fingerprint.get("key") or not job.has_spec:
        return
    table = storage.table(storage.settings.index_table)
    try:
        if job.spec.allow_reuse or all(i.files is None for i in job.spec.inputs):
            table.upsert_entity({"PartitionKey": BY_KEY, "RowKey": job.fingerprint["key"],
                                 "job_id": job.reused_from or job.job_id, "at": time.time()})
        if job.name:
            table.upsert_entity({"PartitionKey": BY_NAME, "RowKey": _h("name", job.name),
                                 "job_id": job.job_id, "name": job.name, "at": time.time()})
    except AzureError as exc:    # a later job runs instead of reusing: never wrong, only slower
        log.warning("job=%s: reuse record not written: %s", job.job_id, type(exc).__name__)


def copy_output(storage: Storage, source: JobRow, target: JobRow) -> int:
    """The source job's output files (not its logs) under the target's output folder, by server-
    side copies; returns how many. Same folder: nothing to copy."""
    if (source.output_container, source.output_prefix) == (target.output_container, target.output_prefix):
        return 0
    src = storage.container(source.output_container)
    dst = storage.ensure_container(target.output_container)
    sas = storage.read_sas(source.output_container)
    prefix = blob_path(source.output_prefix, "")
    copies = []
    for blob in src.list_blob_names(name_starts_with=prefix):
        relative = blob[len(prefix):]
        if relative.startswith("logs/"):
            continue
        client = dst.get_blob_client(blob_path(target.output_prefix, relative))
        url = src.get_blob_client(blob).url
        client.start_copy_from_url(f"{url}?{sas}" if sas else url)
        copies.append(client)
    deadline = time.monotonic() + COPY_WAIT_S
    for client in copies:
        while (status := client.get_blob_properties().copy.status) == "pending":
            if time.monotonic() > deadline:
                raise TimeoutError(f"copying {client.blob_name} is still pending")
            time.sleep(0.5)
        if status not in ("success", None):
            raise RuntimeError(f"copying {client.blob_name}: {status}")
    return len(copies)
