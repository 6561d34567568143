"""The names a job may not use, as the settings give them (pure)."""

from __future__ import annotations

import pytest

from shared.service.jobs.references import internal_names, reserved_name_errors
from shared.settings import Settings
from shared.spec import parse_spec


def job(**fields: object) -> dict[str, object]:
    return {"entry_script": "s.py", "inputs": ["data/"], **fields}


def test_every_container_queue_and_table_of_the_settings_is_internal() -> None:
    for settings in (Settings(), Settings().with_namespace("Ns-One")):
        names = internal_names(settings)
        expected = {*settings.containers, *settings.queues, *settings.tables,
                    *(q + settings.poison_suffix for q in settings.queues)}
        assert set(names) == expected


@pytest.mark.parametrize(("fields", "field"), [
    ({"output": "parallelrun-outputs/other-20250101-000000-abcdef"}, "output"),
    ({"output": "parallelrun/snapshots"}, "output"),
    ({"output": {"container": "parallelrun-requests", "path": "x"}}, "output"),
    ({"output": "parallelrunledger/x"}, "output"),
    ({"output": "azure-webjobs-hosts/locks"}, "output"),
    ({"inputs": ["parallelrun/models/"]}, "inputs.0.container"),
    ({"inputs": ["data/", {"container": "parallelrun-batches-poison"}]}, "inputs.1.container"),
    ({"side_inputs": [{"name": "snaps", "path": "parallelrun/snapshots/"}]}, "side_inputs.0.container"),
    ({"side_inputs": [{"name": "m", "model": "mnist"}, {"name": "other", "path": "parallelrun-outputs/x/"}]},
     "side_inputs.1.container"),
])
def test_internal_names_are_refused_naming_the_field(fields: dict[str, object], field: str) -> None:
    errors = reserved_name_errors(Settings(), parse_spec(job(**fields)))
    assert [e["field"] for e in errors] == [field]


def test_a_namespace_moves_what_is_internal() -> None:
    settings = Settings().with_namespace("ns1")
    assert reserved_name_errors(settings, parse_spec(job(output="parallelrun-outputs/x"))) == []
    assert [e["field"] for e in reserved_name_errors(
        settings, parse_spec(job(output="ns1-outputs/x", inputs=["ns1-system/"])))] == [
        "inputs.0.container", "output"]
