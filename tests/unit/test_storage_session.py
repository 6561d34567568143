"""The storage session reads the environment once: proxies and CA bundles still apply when set."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from shared.storage import ENV_SETTINGS, Storage

CONN = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;")


def session_trusts_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> bool:
    for name in ENV_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Storage(Settings(connection_string=CONN))._session.trust_env


def test_without_proxy_or_ca_settings_no_per_request_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    assert session_trusts_env(monkeypatch) is False


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "REQUESTS_CA_BUNDLE"])
def test_a_proxy_or_ca_bundle_in_the_environment_is_honoured(monkeypatch: pytest.MonkeyPatch,
                                                            name: str) -> None:
    assert session_trusts_env(monkeypatch, **{name: "http://proxy.example:3128"}) is True
