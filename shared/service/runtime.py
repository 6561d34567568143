"""The process-wide runtime: settings, storage clients and the scoring pool, built once.

In Azure the Functions worker builds it from the app settings on first use. The local host and the
tests install one explicitly with :func:`configure` (a namespace per test, the same code otherwise).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.settings import Settings
from shared.storage import Storage

if TYPE_CHECKING:
    from shared.service.ledger.store import Ledger
    from shared.service.working.pool import ScoringPool
    from shared.service.working.worker import Worker

_lock = threading.Lock()
_current: Runtime | None = None


@dataclass
class Runtime:
    settings: Settings
    storage: Storage = field(init=False)
    node_id: str = "node0"

    def __post_init__(self) -> None:
        self.storage = Storage(self.settings)

    @functools.cached_property
    def ledger(self) -> Ledger:
        from shared.service.ledger.store import Ledger
        return Ledger(self.storage.ledger)

    @functools.cached_property
    def pool(self) -> ScoringPool:
        from shared.service.working.pool import ScoringPool
        return ScoringPool(self.settings, node_id=self.node_id)

    @functools.cached_property
    def worker(self) -> Worker:
        from shared.service.working.worker import Worker
        return Worker(self.storage, self.ledger, self.pool, self.node_id)

    def warm_up(self) -> None:
        """What a host does once it is up: start keeping warm scoring processes."""
        self.pool.warm_up()

    def close(self) -> None:
        if "pool" in self.__dict__:
            self.pool.close()
        if "worker" in self.__dict__:
            self.worker.jobs.close()   # a private scratch folder goes with its host


def configure(settings: Settings, node_id: str = "node0") -> Runtime:
    """Install the runtime this process uses (closing the previous one's scoring processes)."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
        _current = Runtime(settings, node_id=node_id)
        return _current


def current() -> Runtime:
    """The installed runtime, or one built from the environment on first use (Azure)."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime(Settings.from_env())
            _current.warm_up()
        return _current
