"""Which storage the ``parallelrun`` CLI talks to: the deployed account with the operator's Entra
login when only ``AzureWebJobsStorage__accountName`` is given, the local Azurite when nothing is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli.main import load_settings
from shared.settings import AZURITE_ACCOUNT
from shared.storage import Storage


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith(("AzureWebJobsStorage", "PARALLELRUN_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)    # no local.settings.json unless a test writes one
    return monkeypatch


def test_an_account_name_alone_means_entra_auth_against_that_account(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AzureWebJobsStorage__accountName", "stparallelrunabc")
    settings = load_settings()
    assert settings.connection_string is None      # no Azurite, no key
    assert settings.account_name == "stparallelrunabc"
    storage = Storage(settings)
    assert storage._uri("blob") == "https://stparallelrunabc.blob.core.windows.net"
    assert storage._uri("table") == "https://stparallelrunabc.table.core.windows.net"


def test_the_environment_s_account_wins_over_local_settings(clean_env: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}}))
    clean_env.setenv("AzureWebJobsStorage__accountName", "stparallelrunabc")
    settings = load_settings()
    assert (settings.connection_string, settings.account_name) == (None, "stparallelrunabc")


def test_nothing_configured_is_the_local_azurite(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.account_name is None
    assert f"AccountName={AZURITE_ACCOUNT};" in (settings.connection_string or "")
