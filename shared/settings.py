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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.limits import Limits

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
# app setting name -> Settings field, for the other values a trigger binding refers to.
BINDING_SETTINGS: dict[str, str] = {
    "PARALLELRUN_SWEEP_SCHEDULE": "sweep_schedule",
}

LOCAL_KEY_SETTING = "PARALLELRUN_LOCAL_KEY"


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

    # "": a private folder per host start (<temp>/parallelrun-<node>-<random>, 0700, removed at
    # stop); set: <scratch_dir>/<node id>/ (0700), shared by the processes of one host
    scratch_dir: str = ""
    snapshot_cache_count: int = 16            # extracted snapshots kept per host (LRU beyond)
    snapshot_cache_bytes: int = 4 << 30       # bytes of extracted snapshots kept per host (4 GiB)
    sandbox: bool = True            # scoring processes may write only their work dir (Landlock)
    sandbox_writable: tuple[str, ...] = ()    # more folders scoring processes may write
    window_per_slot: int = 4        # queued mini-batches per scoring slot of a job (flow control)
    job_cache_ttl_s: float = 5.0    # how long a worker trusts its cached copy of a job row
    env_build_timeout_s: float = 900.0   # a job environment's install, at most
    env_cache_bytes: int = 20 << 30      # built environments kept per node (LRU beyond)
    env_prebuilt_dir: str = ""           # environments built ahead of time (parallelrun env build)
    env_prebuilt_only: bool = False      # run only those: never install packages at run time
    blocks_per_shard: int = 40_000  # output blocks staged per blob before a shard blob is used
    download_concurrency: int = 16  # parallel input downloads per mini-batch
    warm_processes: int = 2         # spare scoring processes kept with the libraries imported
    plan_page_size: int = 5000      # blobs listed per planner invocation
    # a job submitted through the API or a request blob is planned at once (its first step); its
    # step-0 message waits this long first, for a submitter that dies half-way
    plan_backstop_s: float = 30.0
    storage_timeout_s: float = 60.0 # a storage call without an answer by then is retried
    max_result_bytes: int = 256 << 20  # a mini-batch's rows from a scoring process; more fails the try
    # staged rows older than this are committed (a checkpoint) while the job runs or is paused:
    # Azure collects uncommitted blocks ~7 days after upload; 3 days leaves days of margin
    block_max_age_s: float = 3 * 24 * 3600.0
    poison_suffix: str = "-poison"
    limits: Limits = dataclasses.field(default_factory=Limits)  # see shared/limits.py
    # PARALLELRUN_LOCAL_KEY: when set, the local host answers 401 to every route but health
    # without it (header x-functions-key or ?code=); see docs/security.md, "Local key"
    local_key: str | None = dataclasses.field(default=None, repr=False)
    sweep_schedule: str = "0 */1 * * * *"  # NCRONTAB: when the sweep runs (every minute)
    sweep_grace_s: float = 300.0    # a job's index row this long unchanged is checked by the sweep

    @classmethod
    def env_name(cls, field: str) -> str:
        """The app setting of a field: the Functions host's own names for the storage connection,
        the bindings' names for resources, ``PARALLELRUN_<FIELD>`` for everything else."""
        return _SPECIAL_NAMES.get(field) or _BY_FIELD.get(field) or f"PARALLELRUN_{field.upper()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from app settings; every field is read (generated from the fields, so a new
        field cannot be forgotten), unset or empty ones keep their defaults."""
        env = os.environ if env is None else env
        values: dict[str, object] = {"limits": Limits.from_env(env)}
        for f in dataclasses.fields(cls):
            if f.name == "limits":
                continue
            raw = env.get(cls.env_name(f.name))
            if not raw:
                continue
            if f.name == "connection_string" and raw == "UseDevelopmentStorage=true":
                raw = azurite_connection_string(10000, 10001, 10002)
            values[f.name] = _parse(f.type, raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The app settings that reproduce this object through :meth:`from_env` (for child
        processes); generated from the fields, so every field round-trips."""
        env: dict[str, str] = dict(self.limits.to_env())
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "limits" or value is None:
                continue
            if isinstance(value, bool):
                text = "1" if value else "0"
            elif isinstance(value, tuple):
                text = os.pathsep.join(value)
            else:
                text = str(value)
            env[self.env_name(f.name)] = text
        return env

    def resolve(self, expression: str) -> str:
        """Resolve a binding expression such as ``%PARALLELRUN_BATCH_QUEUE%`` as the host would."""
        if expression.startswith("%") and expression.endswith("%"):
            name = expression[1:-1]
            if name in RESOURCE_SETTINGS:
                return getattr(self, RESOURCE_SETTINGS[name])
            if name in BINDING_SETTINGS:
                return getattr(self, BINDING_SETTINGS[name])
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
            scratch_dir=str(Path(self.scratch_dir) / ns) if self.scratch_dir else "")

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.plan_queue, self.batch_queue, self.finalize_queue)

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.ledger_table, self.index_table, self.models_table)

    @property
    def containers(self) -> tuple[str, ...]:
        return (self.requests_container, self.system_container, self.output_container)


_SPECIAL_NAMES = {"connection_string": "AzureWebJobsStorage",
                  "account_name": "AzureWebJobsStorage__accountName",
                  "blob_service_uri": "AzureWebJobsStorage__blobServiceUri",
                  "queue_service_uri": "AzureWebJobsStorage__queueServiceUri",
                  "table_service_uri": "AzureWebJobsStorage__tableServiceUri",
                  "local_key": LOCAL_KEY_SETTING}
_BY_FIELD = {field: name for name, field in (*RESOURCE_SETTINGS.items(), *BINDING_SETTINGS.items())}


def _parse(annotation: object, raw: str) -> object:
    """An app setting's text as the type of its field (annotations are strings here)."""
    kind = str(annotation).replace(" | None", "")
    if kind == "bool":
        return raw.strip().lower() not in ("0", "false", "no", "off")
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind.startswith("tuple"):
        return tuple(p for p in raw.split(os.pathsep) if p)
    return raw
