"""Storage faults for local runs: an HTTP proxy that makes storage misbehave. Used by the failure
tests and the benchmarks; never by the service (processes are killed by :mod:`shared.local.chaos`).

:class:`FaultyProxy` sits between the SDK and Azurite (bound to 127.0.0.1). For each request it
may answer ``503 ServerBusy`` without forwarding (throttling), forward it and then drop the
connection without answering (a lost response: the request *did* happen, the client cannot know),
or forward it and answer only after ``stall_s`` (a storage timeout, when the client's is shorter).
A targeted rule (:meth:`FaultyProxy.hold`) holds every request it matches, unforwarded, until
:meth:`FaultyProxy.release`, then drops it unanswered: "this node is stuck in exactly this call".
Another (:meth:`FaultyProxy.lose_answers`) forwards the next requests it matches and drops their
answers: "this write landed, and its writer cannot know". With ``corrupt_rate`` a forwarded
request body has one byte changed on the way (a PUT's body damaged in transit: storage must
refuse it by its ``Content-MD5``); :meth:`FaultyProxy.damage_bodies` does that to the next
requests it matches, at the body's middle byte.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.local.azurite import free_port

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FaultyProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>, injecting faults at the given rates."""

    def __init__(self, target_port: int, busy_rate: float = 0.0, drop_rate: float = 0.0,
                 stall_rate: float = 0.0, stall_s: float = 0.0, seed: int = 0,
                 keep_bodies: bool = False, corrupt_rate: float = 0.0) -> None:
        self.target_port = target_port
        self.corrupt_rate = corrupt_rate
        self.busy_rate = busy_rate
        self.drop_rate = drop_rate
        self.stall_rate = stall_rate
        self.stall_s = stall_s
        self.port = free_port()
        self.counts = {"forwarded": 0, "busy": 0, "dropped": 0, "stalled": 0, "held": 0,
                       "answer lost": 0, "corrupted": 0}
        self._hold: Callable[[str, str], bool] | None = None
        self._lose: tuple[Callable[[str, str], bool], int] | None = None
        self._damage: tuple[Callable[[str, str], bool], int] | None = None
        self._released = threading.Event()
        self.seen: list[tuple[str, str]] = []   # (method, path with its query) of every request
        self.keep_bodies = keep_bodies
        self.bodies: list[bytes] = []           # with keep_bodies: every request's body, as seen
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def hold(self, match: Callable[[str, str], bool] | None) -> None:
        """Hold requests for which ``match(method, path with query)`` is true (None: no rule)."""
        with self._lock:
            self._hold = match
            self._released.clear()

    def release(self) -> None:
        """Let held requests go: they are dropped without being forwarded, and the rule ends."""
        with self._lock:
            self._hold = None
        self._released.set()

    def lose_answers(self, match: Callable[[str, str], bool], count: int = 1) -> None:
        """Forward the next ``count`` requests for which ``match(method, path with query)`` is
        true, and drop their answers (the request is applied; its client sees the connection
        close and retries)."""
        with self._lock:
            self._lose = (match, count)

    def damage_bodies(self, match: Callable[[str, str], bool], count: int = 1) -> None:
        """Change the middle byte of the bodies of the next ``count`` requests for which
        ``match(method, path with query)`` is true, and forward them."""
        with self._lock:
            self._damage = (match, count)

    def _damaged(self, method: str, path: str, body: bytes) -> bytes:
        with self._lock:
            if not body or self._damage is None or not self._damage[0](method, path):
                return body
            match, count = self._damage
            self._damage = (match, count - 1) if count > 1 else None
            self.counts["corrupted"] += 1
        at = len(body) // 2
        return body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1:]

    def _answer_lost(self, method: str, path: str) -> bool:
        with self._lock:
            if self._lose is None or not self._lose[0](method, path):
                return False
            match, count = self._lose
            self._lose = (match, count - 1) if count > 1 else None
            self.counts["answer lost"] += 1
            return True

    def _held(self, method: str, path: str) -> bool:
        with self._lock:
            if self._hold is None or not self._hold(method, path):
                return False
            self.counts["held"] += 1
        self._released.wait(300)
        return True

    def _roll(self) -> str:
        with self._lock:
            r = self._random.random()
            fate = ("busy" if r < self.busy_rate else
                    "dropped" if r < self.busy_rate + self.drop_rate else
                    "stalled" if r < self.busy_rate + self.drop_rate + self.stall_rate
                    else "forwarded")
            self.counts[fate] += 1
            return fate

    def _corrupted(self, body: bytes) -> bytes:
        """``body``, or (at ``corrupt_rate``) ``body`` with one byte flipped."""
        with self._lock:
            if not body or self._random.random() >= self.corrupt_rate:
                return body
            self.counts["corrupted"] += 1
            at = self._random.randrange(len(body))
        return body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1:]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._held(self.command, self.path):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                fate = "dropped" if proxy._answer_lost(self.command, self.path) else proxy._roll()
                with proxy._lock:
                    proxy.seen.append((self.command, self.path))
                    if proxy.keep_bodies:
                        proxy.bodies.append(body)
                if fate == "busy":
                    payload = b"injected throttling"
                    self.send_response(503, "Server Busy")
                    self.send_header("x-ms-error-code", "ServerBusy")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                body = proxy._corrupted(proxy._damaged(self.command, self.path, body))
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                if fate == "stalled":          # applied, but answered after the client gave up
                    time.sleep(proxy.stall_s)
                if fate == "dropped":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(response.status, response.reason)
                for k, v in response.getheaders():
                    if k.lower() not in HOP_HEADERS and k.lower() != "content-length":
                        self.send_header(k, v)
                # a HEAD answer has no body, its Content-Length is the blob's size: pass it on
                self.send_header("Content-Length", response.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_MERGE = _any

        return Handler

    def start(self) -> FaultyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
