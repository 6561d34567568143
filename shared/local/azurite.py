"""Start and stop the Azurite storage emulator pinned in ``package.json``.

Azurite is started with ``--skipApiVersionCheck`` (the Python SDKs send a newer API version than it
knows) and ``--disableTelemetry``, bound to 127.0.0.1, either in memory or persisted to a folder.
With ``die_with_parent`` (``parallelrun up``) it gets SIGTERM when the thread that started it
exits, so it never outlives its parent, even one killed by SIGKILL (Linux).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.local.procs import die_with_parent as parent_death_signal
from shared.settings import azurite_connection_string

log = logging.getLogger("parallelrun.local.azurite")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def azurite_executable() -> str:
    local = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise FileNotFoundError("Azurite is not installed: run `./dev setup` (or `npm ci`) in "
                            f"{PROJECT_ROOT}")


@dataclass
class Azurite:
    """One Azurite process. ``location=None`` keeps everything in memory."""

    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    location: Path | None = None
    debug_log: Path | None = None
    die_with_parent: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.blob_port = self.blob_port or free_port()
        self.queue_port = self.queue_port or free_port()
        self.table_port = self.table_port or free_port()

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.blob_port, self.queue_port, self.table_port)

    @property
    def ports(self) -> tuple[int, int, int]:
        return (self.blob_port, self.queue_port, self.table_port)

    def start(self, timeout_s: float = 30.0) -> Azurite:
        busy = [p for p in self.ports if port_open(p)]
        if busy:
            raise RuntimeError(f"cannot start Azurite: port(s) {busy} on 127.0.0.1 are already in use")
        args = [azurite_executable(), "--silent", "--skipApiVersionCheck", "--disableTelemetry",
                "--loose",
                "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
                "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
                "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port)]
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            Path(self.location).mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        if self.debug_log:
            args += ["--debug", str(self.debug_log)]
        log.info("starting Azurite on 127.0.0.1 ports %s/%s/%s", *self.ports)
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True,
                                        preexec_fn=parent_death_signal()
                                        if self.die_with_parent else None)
        deadline = time.monotonic() + timeout_s
        while not all(port_open(p) for p in self.ports):
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"Azurite exited with code {self.process.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"Azurite did not listen on {self.ports} within {timeout_s:.0f}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
