"""One frozen settings object, read once from the environment and passed down.

Every storage client is built from it (see :mod:`shared.storage`). Two ways to reach storage:

* ``AzureWebJobsStorage`` - a connection string (Azurite locally, or a key-based account);
* identity-based: ``AzureWebJobsStorage__accountName`` (or ``__blobServiceUri`` /
  ``__queueServiceUri`` / ``__tableServiceUri``) with ``DefaultAzureCredential`` in Azure.

Resource names come from app settings too, so the queue-trigger declarations in ``functions/``
(``%PARALLELRUN_BATCH_QUEUE%``) and the code that enqueues agree, and tests can give every test its
own queues, tables and containers on one Azurite.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The Azurite emulator's well-known development account (public, documented; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# app setting name -> Settings field, for every resource name a trigger binding can refer to.
RESOURCE_SETTINGS: dict[str, str] = {
    "PARALLELRUN_PLAN_QUEUE": "plan_queue",
    "PARALLELRUN_BATCH_QUEUE": "batch_queue",
    "PARALLELRUN_FINALIZE_QUEUE": "finalize_queue",
    "PARALLELRUN_REQUESTS_CONTAINER": "requests_container",
    "PARALLELRUN_SYSTEM_CONTAINER": "system_container",
    "PARALLELRUN_OUTPUT_CONTAINER": "output_container",
    "PARALLELRUN_LEDGER_TABLE": "ledger_table",
    "PARALLELRUN_INDEX_TABLE": "index_table",
    "PARALLELRUN_MODELS_TABLE": "models_table",
}


def azurite_connection_string(blob_port: int, queue_port: int, table_port: int,
                              host: str = "127.0.0.1") -> str:
    """Connection string for an Azurite listening on the given ports."""
    base = f"http://{host}:{{}}/{AZURITE_ACCOUNT}"
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={base.format(blob_port)};QueueEndpoint={base.format(queue_port)};"
            f"TableEndpoint={base.format(table_port)};")


@dataclass(frozen=True)
class Settings:
    """Everything the core library reads from its environment. Defaults are the documented ones."""

    connection_string: str | None = None
    account_name: str | None = None
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None

    plan_queue: str = "parallelrun-plan"
    batch_queue: str = "parallelrun-batches"
    finalize_queue: str = "parallelrun-finalize"
    requests_container: str = "parallelrun-requests"
    system_container: str = "parallelrun"          # snapshots/, models/, jobs/<id>/spec.json
    output_container: str = "parallelrun-outputs"  # default output: <container>/<job id>/
    ledger_table: str = "parallelrunledger"        # one partition per job
    index_table: str = "parallelrunjobs"           # one row per job, for listing
    models_table: str = "parallelrunmodels"        # model registry: name -> versions

    scratch_dir: str = dataclasses.field(
        default_factory=lambda: str(Path(tempfile.gettempdir()) / "parallelrun"))
    window_per_slot: int = 4        # queued mini-batches per scoring slot of a job (flow control)
    job_cache_ttl_s: float = 2.0    # how long a worker trusts its cached copy of a job row
    blocks_per_shard: int = 40_000  # output blocks staged per blob before a shard blob is used
    download_concurrency: int = 16  # parallel input downloads per mini-batch
    warm_processes: int = 2         # spare scoring processes kept with the libraries imported
    plan_page_size: int = 5000      # blobs listed per planner invocation
    storage_timeout_s: float = 60.0 # a storage call without an answer by then is retried
    # staged rows older than this are committed (a checkpoint) while the job runs or is paused:
    # Azure collects uncommitted blocks ~7 days after upload; 3 days leaves days of margin
    block_max_age_s: float = 3 * 24 * 3600.0
    poison_suffix: str = "-poison"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        conn = env.get("AzureWebJobsStorage") or None
        if conn == "UseDevelopmentStorage=true":
            conn = azurite_connection_string(10000, 10001, 10002)
        values["connection_string"] = conn
        for field, suffix in (("account_name", "accountName"), ("blob_service_uri", "blobServiceUri"),
                              ("queue_service_uri", "queueServiceUri"),
                              ("table_service_uri", "tableServiceUri")):
            values[field] = env.get(f"AzureWebJobsStorage__{suffix}") or None
        for name, field in RESOURCE_SETTINGS.items():
            if env.get(name):
                values[field] = env[name]
        if env.get("PARALLELRUN_SCRATCH_DIR"):
            values["scratch_dir"] = env["PARALLELRUN_SCRATCH_DIR"]
        for name, field in (("PARALLELRUN_WINDOW_PER_SLOT", "window_per_slot"),
                            ("PARALLELRUN_BLOCKS_PER_SHARD", "blocks_per_shard"),
                            ("PARALLELRUN_DOWNLOAD_CONCURRENCY", "download_concurrency"),
                            ("PARALLELRUN_WARM_PROCESSES", "warm_processes")):
            if env.get(name):
                values[field] = int(env[name])
        for name, field in (("PARALLELRUN_JOB_CACHE_TTL_S", "job_cache_ttl_s"),
                            ("PARALLELRUN_STORAGE_TIMEOUT_S", "storage_timeout_s"),
                            ("PARALLELRUN_BLOCK_MAX_AGE_S", "block_max_age_s")):
            if env.get(name):
                values[field] = float(env[name])
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The app settings that reproduce this object through :meth:`from_env` (for child processes)."""
        env: dict[str, str] = {}
        if self.connection_string:
            env["AzureWebJobsStorage"] = self.connection_string
        for field, suffix in (("account_name", "accountName"), ("blob_service_uri", "blobServiceUri"),
                              ("queue_service_uri", "queueServiceUri"),
                              ("table_service_uri", "tableServiceUri")):
            if getattr(self, field):
                env[f"AzureWebJobsStorage__{suffix}"] = getattr(self, field)
        for name, field in RESOURCE_SETTINGS.items():
            env[name] = getattr(self, field)
        env["PARALLELRUN_SCRATCH_DIR"] = self.scratch_dir
        env["PARALLELRUN_WINDOW_PER_SLOT"] = str(self.window_per_slot)
        env["PARALLELRUN_BLOCKS_PER_SHARD"] = str(self.blocks_per_shard)
        env["PARALLELRUN_DOWNLOAD_CONCURRENCY"] = str(self.download_concurrency)
        env["PARALLELRUN_WARM_PROCESSES"] = str(self.warm_processes)
        env["PARALLELRUN_JOB_CACHE_TTL_S"] = str(self.job_cache_ttl_s)
        env["PARALLELRUN_STORAGE_TIMEOUT_S"] = str(self.storage_timeout_s)
        env["PARALLELRUN_BLOCK_MAX_AGE_S"] = str(self.block_max_age_s)
        return env

    def resolve(self, expression: str) -> str:
        """Resolve a binding expression such as ``%PARALLELRUN_BATCH_QUEUE%`` as the host would."""
        if expression.startswith("%") and expression.endswith("%"):
            name = expression[1:-1]
            if name in RESOURCE_SETTINGS:
                return getattr(self, RESOURCE_SETTINGS[name])
            raise KeyError(f"app setting {name} is not defined")
        return expression

    def with_namespace(self, namespace: str) -> Settings:
        """A copy whose queues, tables and containers all carry ``namespace`` (tests, side-by-side runs)."""
        ns = namespace.lower()
        tables = ns.replace("-", "")
        return dataclasses.replace(
            self,
            plan_queue=f"{ns}-plan", batch_queue=f"{ns}-batches", finalize_queue=f"{ns}-finalize",
            requests_container=f"{ns}-requests", system_container=f"{ns}-system",
            output_container=f"{ns}-outputs", ledger_table=f"{tables}ledger",
            index_table=f"{tables}jobs", models_table=f"{tables}models",
            scratch_dir=str(Path(self.scratch_dir) / ns))

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.plan_queue, self.batch_queue, self.finalize_queue)

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.ledger_table, self.index_table, self.models_table)

    @property
    def containers(self) -> tuple[str, ...]:
        return (self.requests_container, self.system_container, self.output_container)
