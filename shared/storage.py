"""Storage access in one place: every blob, queue and table client is built here from :class:`Settings`.

Transient faults (timeouts, 408/429/5xx, dropped connections) are retried by the SDK's exponential
retry policy configured here, so they never consume a user's ``run_max_try``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    UserDelegationKey,
    generate_container_sas,
)
from azure.storage.blob import ExponentialRetry as BlobRetry
from azure.storage.queue import ExponentialRetry as QueueRetry
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.backoff import BACKOFF
from shared.scoring.blobreader import SAS_LIFETIME, SAS_RENEW_BEFORE, BlobReader
from shared.settings import Settings

log = logging.getLogger("parallelrun.storage")

# SDK retry policy: transient faults back off exponentially and do not reach the caller.
# (The SDKs also cap connect, read and status retries at 3 each by default: raised to the total.)
RETRY = {"retry_total": 8, "retry_connect": 8, "retry_read": 8, "retry_status": 8,
         "retry_backoff_factor": 0.4, "retry_backoff_max": 20, "connection_timeout": 10,
         "read_timeout": 60}
# Connections kept per storage endpoint: enough for every concurrent invocation and download.
POOL_SIZE = 64
CONTAINER_CLIENTS = 64   # container clients kept (jobs may each write their own container)


def _retry_table_posts(client: TableServiceClient) -> TableServiceClient:
    """Let the table client retry a request whose response was lost whatever its method.

    The SDK does not retry a POST (or MERGE) whose answer was lost, since it may have been applied.
    Every table write of this project tolerates a repeat: entity-group transactions are conditional
    and the ledger recognises its own commit by the try id; an insert that finds its own row treats
    "already exists" as success; upserts are idempotent. (The tables SDK builds its retry policy
    itself, so the one instance it made is widened here, in one place.)"""
    for policy in getattr(client, "_policies", []):
        if isinstance(policy, RetryPolicy):
            policy._method_whitelist = frozenset(policy._method_whitelist | {"POST", "PATCH", "MERGE"})
    return client


PROXY_SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
CA_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")   # requests' own order


def session_from_environment(environ: Mapping[str, str]) -> requests.Session:
    """The storage clients' HTTP session, with the environment read once, here.

    With ``trust_env``, requests reads the environment on every request: ~/.netrc, and the proxy
    variables, for which urllib walks all of ``os.environ`` twice (half of an SDK request's client
    CPU on a worker when a CA bundle variable was set, as it is on many machines). So the
    environment is read once: a CA bundle becomes the session's ``verify``; only a proxy
    (``*_PROXY``) keeps ``trust_env``, because requests then applies ``NO_PROXY`` per URL."""
    session = requests.Session()
    session.trust_env = any(environ.get(v) for v in PROXY_SETTINGS)
    if not session.trust_env:
        bundle = next((environ[v] for v in CA_SETTINGS if environ.get(v)), None)
        if bundle:
            session.verify = bundle
    return session


class _CountingAdapter(requests.adapters.HTTPAdapter):
    """Counts the storage requests each thread sends, at the transport (retries included)."""

    _local = threading.local()

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        _CountingAdapter._local.count = getattr(_CountingAdapter._local, "count", 0) + 1
        return super().send(request, *args, **kwargs)


def requests_sent_by_this_thread() -> int:
    """Storage round trips this thread has sent so far (any Storage of this process)."""
    return getattr(_CountingAdapter._local, "count", 0)


class Storage:
    """Lazily built, thread-safe storage clients for one :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._queues: dict[str, QueueClient] = {}
        self._containers: dict[str, ContainerClient] = {}
        self._session = session_from_environment(os.environ)
        adapter = _CountingAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def _options(self) -> dict[str, Any]:
        """Client options: retries, timeouts and one shared connection pool."""
        return {**RETRY, "read_timeout": self.settings.storage_timeout_s,
                "transport": RequestsTransport(session=self._session, session_owner=False)}

    # -- service clients -------------------------------------------------------------------
    @functools.cached_property
    def _credential(self) -> Any:
        from azure.identity import DefaultAzureCredential  # only in identity-based deployments
        return DefaultAzureCredential()

    def _uri(self, kind: str) -> str:
        s = self.settings
        explicit = {"blob": s.blob_service_uri, "queue": s.queue_service_uri,
                    "table": s.table_service_uri}[kind]
        if explicit:
            return explicit
        if not s.account_name:
            raise RuntimeError("storage is not configured: set AzureWebJobsStorage "
                               "or AzureWebJobsStorage__accountName")
        return f"https://{s.account_name}.{kind}.core.windows.net"

    @functools.cached_property
    def blob_service(self) -> BlobServiceClient:
        if self.settings.connection_string:
            return BlobServiceClient.from_connection_string(
                self.settings.connection_string, retry_policy=BlobRetry(**BACKOFF), **self._options())
        return BlobServiceClient(self._uri("blob"), credential=self._credential,
                                 retry_policy=BlobRetry(**BACKOFF), **self._options())

    @functools.cached_property
    def queue_service(self) -> QueueServiceClient:
        policies: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                    "message_decode_policy": TextBase64DecodePolicy(),
                    "retry_policy": QueueRetry(**BACKOFF)}
        if self.settings.connection_string:
            return QueueServiceClient.from_connection_string(
                self.settings.connection_string, **policies, **self._options())
        return QueueServiceClient(self._uri("queue"), credential=self._credential, **policies,
                                  **self._options())

    @functools.cached_property
    def table_service(self) -> TableServiceClient:
        if self.settings.connection_string:
            return _retry_table_posts(TableServiceClient.from_connection_string(
                self.settings.connection_string, **self._options()))
        return _retry_table_posts(TableServiceClient(self._uri("table"), credential=self._credential,
                                                     **self._options()))

    @functools.cached_property
    def blob_reader(self) -> BlobReader:
        """Whole-blob GETs without the SDK's per-request cost (:mod:`shared.scoring.blobreader`),
        with read-only SAS tokens this account makes and renews."""
        service = self.blob_service
        return BlobReader(service.url, service.api_version, self.settings.storage_timeout_s,
                          _StorageSas(self))

    def read_sas(self, container: str) -> str:
        """A read-only SAS token for ``container`` (the source of a server-side copy)."""
        return _StorageSas(self)(container, dt.datetime.now(dt.UTC))

    def upload_sas(self, container: str) -> str:
        """A create/write SAS token for ``container``, valid for ``SAS_LIFETIME``: the CLI's
        uploads over plain HTTP (:mod:`shared.cli.uploads`). With an identity, a user delegation
        SAS (the identity's role still decides); raises the SDK's error if none can be made."""
        return self._upload_sas(container, dt.datetime.now(dt.UTC))

    @functools.cached_property
    def _upload_sas(self) -> _StorageSas:
        return _StorageSas(self, ContainerSasPermissions(create=True, write=True))

    # -- resource clients ------------------------------------------------------------------
    def container(self, name: str) -> ContainerClient:
        """The client of container ``name``, built once (a client's pipeline costs ~45 us of CPU to
        build, and the worker asks for a container several times per mini-batch); the most
        recently used ``CONTAINER_CLIENTS`` are kept."""
        with self._lock:
            client = self._containers.pop(name, None)
            if client is None:
                client = self.blob_service.get_container_client(name)
            self._containers[name] = client          # most recently used last
            while len(self._containers) > CONTAINER_CLIENTS:
                self._containers.pop(next(iter(self._containers)))
            return client

    def queue(self, name: str) -> QueueClient:
        with self._lock:
            client = self._queues.get(name)
            if client is None:
                client = self.queue_service.get_queue_client(
                    name, message_encode_policy=TextBase64EncodePolicy(),
                    message_decode_policy=TextBase64DecodePolicy())
                self._queues[name] = client
            return client

    def table(self, name: str) -> TableClient:
        return self.table_service.get_table_client(name)

    @property
    def ledger(self) -> TableClient:
        return self.table(self.settings.ledger_table)

    @property
    def system(self) -> ContainerClient:
        return self.container(self.settings.system_container)

    def blob_url(self, container: str, name: str) -> str:
        return self.container(container).get_blob_client(name).url

    # -- provisioning ----------------------------------------------------------------------
    def ensure(self) -> None:
        """Create every queue (with its poison queue), table and container; idempotent."""
        s = self.settings
        for name in s.queues:
            for q in (name, name + s.poison_suffix):
                _create(self.queue(q).create_queue)
        for name in s.tables:
            _create(lambda n=name: self.table_service.create_table(n))
        for name in s.containers:
            _create(self.container(name).create_container)
        log.debug("storage ready: queues=%s tables=%s containers=%s", s.queues, s.tables, s.containers)

    def ensure_container(self, name: str) -> ContainerClient:
        client = self.container(name)
        _create(client.create_container)
        return client


def _create(create: Any) -> None:
    try:
        create()
    except ResourceExistsError:
        pass


def blob_path(prefix: str, name: str) -> str:
    """``name`` under the folder ``prefix`` of a container (no leading or doubled slashes)."""
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


class _StorageSas:
    """Container SAS tokens for a :class:`Storage`'s account: read-only unless told."""

    def __init__(self, storage: Storage, permission: ContainerSasPermissions | None = None) -> None:
        self.storage = storage
        self.permission = permission or ContainerSasPermissions(read=True)
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_key_expiry = dt.datetime.min.replace(tzinfo=dt.UTC)

    def __call__(self, container: str, now: dt.datetime) -> str:
        service = self.storage.blob_service
        credential = service.credential
        key = getattr(credential, "account_key", None)
        common: dict[str, Any] = {"account_name": service.account_name, "container_name": container,
                  "permission": self.permission,
                  "start": now - dt.timedelta(minutes=5), "expiry": now + SAS_LIFETIME}
        if key:
            return generate_container_sas(account_key=key, **common)
        if credential is None:   # the connection string carries a SAS (or the account is public)
            return urllib.parse.urlsplit(service.url).query
        if self._delegation_key is None or self._delegation_key_expiry - now < SAS_RENEW_BEFORE:
            expiry = now + dt.timedelta(hours=2)
            self._delegation_key = service.get_user_delegation_key(now - dt.timedelta(minutes=5),
                                                                   expiry)
            self._delegation_key_expiry = expiry
        return generate_container_sas(user_delegation_key=self._delegation_key, **common)
