"""The storage session reads the environment once: a CA bundle becomes its ``verify``, a proxy
keeps requests' own per-URL handling (``NO_PROXY``), and nothing else is looked up per request."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from shared.settings import Settings
from shared.storage import CA_SETTINGS, PROXY_SETTINGS, Storage, session_from_environment

CONN = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;")


def storage_session(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    for name in (*PROXY_SETTINGS, *CA_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Storage(Settings(connection_string=CONN))._session


def test_without_proxy_or_ca_settings_no_per_request_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    session = storage_session(monkeypatch)
    assert session.trust_env is False and session.verify is True   # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_is_read_once_into_verify(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    session = storage_session(monkeypatch, **{name: "/etc/ssl/certs/bundle.pem"})
    assert session.trust_env is False                               # type: ignore[attr-defined]
    assert session.verify == "/etc/ssl/certs/bundle.pem"            # type: ignore[attr-defined]


def test_requests_ca_bundle_wins_over_curl_ca_bundle() -> None:
    session = session_from_environment({"CURL_CA_BUNDLE": "/c.pem", "REQUESTS_CA_BUNDLE": "/r.pem"})
    assert session.verify == "/r.pem"


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_keeps_requests_own_handling(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    assert storage_session(monkeypatch, **{name: "http://proxy.example:3128"}).trust_env is True  # type: ignore[attr-defined]


@pytest.fixture
def local_server() -> Iterator[str]:
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the handler's protocol
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_with_a_ca_bundle_set_a_request_reads_no_proxy_settings(
        monkeypatch: pytest.MonkeyPatch, local_server: str) -> None:
    session = session_from_environment({"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"})
    lookups = []
    real = urllib.request.getproxies_environment
    monkeypatch.setattr(urllib.request, "getproxies_environment",
                        lambda: lookups.append(1) or real())
    for _ in range(3):
        assert session.get(local_server, timeout=5).text == "ok"
    assert lookups == []
