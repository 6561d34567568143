"""What a worker process prepares once per job: the parsed spec, the extracted code snapshot, the
scoring-process configuration and the output target. Cached with the job row, refreshed after
``job_cache_ttl_s`` so cancellation and budget stops are seen quickly."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared import environment
from shared.errors import SubmitterError
from shared.scoring import tables
from shared.scoring.protocol import ScoringConfig
from shared.service.finalizing.assembly import OutputTarget
from shared.service.ledger.environment_rows import BuildState
from shared.service.ledger.rows import JobRow
from shared.service.ledger.store import Ledger
from shared.service.working import environments, models, scratch, sideinputs, snapshots
from shared.service.working.buildreport import BuildReport
from shared.settings import Settings
from shared.spec import InputSpec, JobSpec
from shared.storage import Storage, blob_path

log = logging.getLogger("parallelrun.jobcontext")

# what extracting a snapshot raises when its blob is gone or is not a sound zip: retrying cannot help
_BROKEN_ZIP = (SubmitterError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


_DEFAULT_FILE_NAME: str = JobSpec.model_fields["append_row_file_name"].default


def _no_file(path: str) -> str:
    raise FileNotFoundError(f"{path}: a job row's environment is resolved at submission")


class JobUnrunnable(SubmitterError):
    """The job's context cannot be built, and retrying will not help: its code snapshot is missing
    or cannot be extracted, its entry script is not in it, or a pinned model version is gone. The
    worker stops the job with this reason instead of failing every delivery. Transient storage
    errors are not this: they raise as they are, and the host retries."""


@dataclass(frozen=True)
class JobContext:
    job: JobRow
    spec: JobSpec
    inputs: list[InputSpec]
    scoring: ScoringConfig
    pool_key: str
    target: OutputTarget
    processes: int

    @property
    def tabular(self) -> bool:
        return self.spec.input_type == "tabular"

    def payload(self, items: list[list[Any]], paths: list[str]) -> list[str] | dict[str, Any]:
        """What a scoring process gets: file paths, or the description of a table to read."""
        if not self.tabular:
            return paths
        return {"items": items, "inputs": [i.wire for i in self.spec.inputs], "schemas": self.job.schemas,
                "partition_keys": self.spec.partition_keys}

    def context(self, batch_index: int, items: list[list[Any]]) -> dict[str, Any]:
        """``mini_batch_context``: index, dataset (input name) and, with partition_keys, the values."""
        first = items[0]
        keys = self.spec.partition_keys
        values = (tables.partition_of(self.inputs[first[0]].wire, first[1], keys)
                  if keys else None)
        return {"minibatch_index": batch_index, "dataset": self.inputs[first[0]].name,
                "partition_key_value": values}

    @property
    def batches_dir(self) -> Path:
        return Path(self.scoring.work_dir).parent / "batches"


def output_target(settings: Settings, job: JobRow) -> OutputTarget:
    """The output file (or, for output_format parquet, the ``<name>.parquet`` folder of parts)."""
    name, fmt = ((job.spec.append_row_file_name, job.spec.output_format) if job.has_spec
                 else (_DEFAULT_FILE_NAME, "text"))   # an abandoned submission's row has no spec
    parts = fmt == "parquet"
    if parts:
        name = name.rsplit(".", 1)[0] + ".parquet"
    return OutputTarget(job.job_id, job.output_container, blob_path(job.output_prefix, name),
                        settings.system_container, settings.blocks_per_shard, parts)


def process_count(spec: JobSpec) -> int:
    return spec.process_count_per_node or os.cpu_count() or 1


class JobContexts:
    """Per-process cache of :class:`JobContext` keyed by job id."""

    def __init__(self, storage: Storage, ledger: Ledger, node_id: str) -> None:
        self.storage = storage
        self.ledger = ledger
        self.node_id = node_id
        # private to this host: see shared.service.working.scratch; caches keyed by storage account + content hash
        self.root, self._private_root = scratch.host_root(storage.settings.scratch_dir, node_id)
        self.model_cache = self.root / "models"    # the pinned models, once per node
        self._environments: environments.Environments | None = None
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, JobContext]] = {}
        self._refreshing: set[str] = set()
        self._built = threading.Condition(self._lock)

    def get(self, job_id: str, fresh: bool = False) -> JobContext:
        """The job's context, its row at most ``job_cache_ttl_s`` old; ``fresh``: read it now.

        One thread reads an expired row while the process's other threads go on with the cached
        one (a row is then at most one read old), and a job's first context is built once: threads
        that want it meanwhile wait for that build (and build it themselves only if it failed).
        A refresh so costs one read per process, not one per concurrent invocation."""
        while True:
            now = time.monotonic()
            with self._lock:
                hit = self._cache.get(job_id)
                if job_id in self._refreshing:
                    if hit and not fresh:
                        return hit[1]
                    self._built.wait()   # woken by every build's end: look again
                    continue
                if hit and not fresh and now - hit[0] < self.storage.settings.job_cache_ttl_s:
                    return hit[1]
                self._refreshing.add(job_id)
                break
        try:
            job = self.ledger.get_job(job_id)
            if hit and hit[1].job.spec_json == job.spec_json:
                ctx = JobContext(job, *[getattr(hit[1], f) for f in (
                    "spec", "inputs", "scoring", "pool_key", "target", "processes")])
            else:
                ctx = self._build(job)
            with self._lock:
                self._cache[job_id] = (now, ctx)
            return ctx
        finally:
            with self._lock:
                self._refreshing.discard(job_id)
                self._built.notify_all()

    def _build(self, job: JobRow) -> JobContext:
        try:
            spec = job.spec
        except SubmitterError as exc:
            raise JobUnrunnable(f"the job's spec no longer parses: {exc}", job_id=job.job_id) from exc
        try:
            source = snapshots.extract(self.storage, job.snapshot, self.root / "snapshots",
                                       in_use=self._snapshots_in_use())
        except _BROKEN_ZIP as exc:
            raise JobUnrunnable(f"code snapshot {job.snapshot} cannot be used: "
                                f"{type(exc).__name__}: {exc}", job_id=job.job_id) from exc
        entry = (source / spec.entry_script).resolve()
        if not entry.is_relative_to(source.resolve()) or not entry.is_file():
            raise JobUnrunnable(f"entry_script {spec.entry_script} is not in code snapshot "
                                f"{job.snapshot}", job_id=job.job_id)
        scoring = ScoringConfig(
            job_id=job.job_id, entry_script=str(entry), source_dir=str(source),
            work_dir=str(self.root / "jobs" / job.job_id / "work"),
            arguments=tuple(spec.arguments or ()), environment=dict(spec.environment_variables or {}),
            logging_level=spec.logging_level, node_id=self.node_id, model_pins=dict(job.models),
            output_format=spec.output_format, bindings=spec.all_bindings,
            side_input_paths=self._side_inputs(job), python_path=self._environment(job),
            **self._models(job))
        key_material = json.dumps([job.job_id, job.snapshot, spec.entry_script, job.models,
                                   scoring.environment, scoring.arguments, scoring.logging_level,
                                   scoring.bindings, scoring.python_path])
        return JobContext(
            job=job, spec=spec,
            inputs=list(spec.inputs),
            scoring=scoring, pool_key=hashlib.sha256(key_material.encode()).hexdigest()[:16],
            target=output_target(self.storage.settings, job), processes=process_count(spec))

    def _models(self, job: JobRow) -> dict[str, Any]:
        """The job's pinned model versions, downloaded once per node into the cache and linked,
        as real read-only files, into the job's ``azureml-models`` folder (outside every scoring
        process's writable folder): ``models_root`` and ``model_paths`` (name -> the path
        ``Model.get_model_path`` returns) for the scoring config.

        A version that no longer exists (its registry row or one of its files deleted, or refused
        by the download's own checks) makes the job unrunnable: :class:`JobUnrunnable` naming the
        model. Any other error (storage unavailable) raises as it is, and the delivery is retried;
        scoring processes never fetch a pinned model themselves."""
        root = self.root / "jobs" / job.job_id / "azureml-models"
        paths = {}
        for name, version in job.models.items():
            try:
                model = models.get_version(self.storage, name, version)
                cached = models.cache_download(self.storage, model, self.model_cache)
            except (SubmitterError, ResourceNotFoundError) as exc:
                what = (f"it is gone from storage ({getattr(exc, 'error_code', None) or 'not found'})"
                        if isinstance(exc, ResourceNotFoundError) else f"{type(exc).__name__}: {exc}")
                raise JobUnrunnable(f"model {name} version {version} cannot be used: {what}",
                                    job_id=job.job_id) from exc
            paths[name] = str(models.link_version(cached, model, root))
        return {"models_root": str(root) if paths else "", "model_paths": paths}

    @property
    def environments(self) -> environments.Environments:
        """The node's built job environments (made on first use)."""
        with self._lock:
            if self._environments is None:
                self._environments = environments.Environments.for_settings(
                    self.root / "environments", self.storage.settings)
            return self._environments

    def _environment(self, job: JobRow) -> tuple[str, ...]:
        """The job environment's packages, built once per node (:mod:`environments`): the folder
        its scoring processes import from first. A build that fails makes the job unrunnable, with
        the installer's message."""
        resolved = environment.resolve(job.spec.environment, _no_file)
        if resolved is None:
            return ()
        key = environments.environment_key(resolved, self.environments.pins)
        report = BuildReport(self.storage, job, self.node_id, key, resolved.requirements)
        try:
            built = self.environments.ensure(resolved, report.progress)
        except environments.BuildFailed as exc:
            report.finish(BuildState.FAILED, str(exc).splitlines()[0][:200], exc.log)
            raise JobUnrunnable(f"the job's environment could not be built: {exc}",
                                job_id=job.job_id) from exc
        if built.built_now:
            report.finish(BuildState.BUILT, f"built in {built.seconds:.1f} s", built.log)
        else:
            report.finish(BuildState.REUSED, "pre-built in the deployment" if built.log is None
                          else "built before on this node: nothing installed")
        log.info("job=%s environment %s %s", job.job_id, built.key,
                 f"built in {built.seconds:.1f} s" if built.built_now else "reused (built before on this node)")
        return (str(built.path / "site"),)

    def _side_inputs(self, job: JobRow) -> dict[str, str]:
        """The job's file side inputs, downloaded once per node: name -> the path they bind to.
        One that cannot be used (missing, empty, too big) makes the job unrunnable, naming it."""
        root = self.root / "jobs" / job.job_id / "side_inputs"
        paths = {}
        for side in job.spec.side_inputs or []:
            if side.model is not None:
                continue
            try:
                paths[side.name] = str(sideinputs.materialize(self.storage, side, root))
            except SubmitterError as exc:
                raise JobUnrunnable(str(exc), job_id=job.job_id) from exc
        return paths

    def _snapshots_in_use(self) -> frozenset[str]:
        """The snapshots of the jobs this process holds contexts of (their scoring processes may
        run from them): never evicted."""
        with self._lock:
            return frozenset(snapshots.sha_of(ctx.job.snapshot) for _, ctx in self._cache.values()
                             if ctx.job.snapshot.startswith(snapshots.PREFIX))

    def close(self) -> None:
        """Remove a private scratch folder (after the scoring processes stopped)."""
        if self._private_root:
            scratch.remove_tree(self.root)

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._cache.pop(job_id, None)
