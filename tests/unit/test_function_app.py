"""The function app declares exactly the triggers the design names, bound through app settings.

``app.get_functions()`` is what the Functions host (and the local host) reads to index the app, so
these tests read the declarations the same way: once, from the real ``function_app`` module. The
adapters in ``functions/`` stay thin: they never build storage clients themselves.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.settings import RESOURCE_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = ROOT / "functions"
QUEUES = {"plan": "%PARALLELRUN_PLAN_QUEUE%",
          "score_batch": "%PARALLELRUN_BATCH_QUEUE%",
          "finalize": "%PARALLELRUN_FINALIZE_QUEUE%",
          "plan_poison": "%PARALLELRUN_PLAN_QUEUE%-poison",
          "batch_poison": "%PARALLELRUN_BATCH_QUEUE%-poison",
          "finalize_poison": "%PARALLELRUN_FINALIZE_QUEUE%-poison"}


@pytest.fixture(scope="module")
def declared() -> dict[str, dict[str, Any]]:
    """Every function's name -> its function.json (bindings), from one ``get_functions()`` call."""
    assert str(ROOT) in [str(Path(p).resolve()) for p in sys.path if p], "repo root is importable"
    import function_app

    functions = function_app.app.get_functions()
    by_name = {f.get_function_name(): json.loads(f.get_function_json()) for f in functions}
    assert len(by_name) == len(functions), "function names are unique"
    return by_name


def trigger(declared: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """The one binding of function ``name`` whose direction is IN (its trigger)."""
    inputs = [b for b in declared[name]["bindings"] if b["direction"] == "IN"]
    assert len(inputs) == 1, declared[name]
    return inputs[0]


def test_the_app_declares_exactly_its_ten_functions(declared: dict[str, dict[str, Any]]) -> None:
    assert set(declared) == {"health", "http_api", "plan", "score_batch", "finalize",
                             "submit_from_blob", "batch_poison", "plan_poison", "finalize_poison",
                             "sweep"}
    assert {name: trigger(declared, name)["type"] for name in declared} == {
        "health": "httpTrigger", "http_api": "httpTrigger", "plan": "queueTrigger",
        "score_batch": "queueTrigger", "finalize": "queueTrigger", "submit_from_blob": "blobTrigger",
        "batch_poison": "queueTrigger", "plan_poison": "queueTrigger",
        "finalize_poison": "queueTrigger", "sweep": "timerTrigger"}


def test_the_sweep_runs_on_a_schedule_from_app_settings(declared: dict[str, dict[str, Any]]) -> None:
    from shared.local.timers import parse_schedule

    timer = trigger(declared, "sweep")
    assert timer["schedule"] == "%PARALLELRUN_SWEEP_SCHEDULE%" and timer["useMonitor"] is True
    assert declared["sweep"]["bindings"] == [timer]
    settings = Settings.from_env({"PARALLELRUN_SWEEP_SCHEDULE": "*/10 * * * * *"})
    assert settings.resolve(timer["schedule"]) == "*/10 * * * * *"
    assert Settings.from_env(settings.to_env()).sweep_schedule == "*/10 * * * * *"
    assert Settings.from_env(Settings(sweep_grace_s=7.5).to_env()).sweep_grace_s == 7.5
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert sample["PARALLELRUN_SWEEP_SCHEDULE"] == Settings().sweep_schedule
    parse_schedule(Settings().resolve(timer["schedule"]))   # the default parses
    bicep = (ROOT / "infra" / "modules" / "functionapp.bicep").read_text()
    assert "name: 'PARALLELRUN_SWEEP_SCHEDULE'" in bicep, "Azure needs the setting to index the app"


def test_health_is_an_anonymous_get(declared: dict[str, dict[str, Any]]) -> None:
    http = trigger(declared, "health")
    assert http["route"] == "health"
    assert http["methods"] == ["GET"]
    assert http["authLevel"] == "ANONYMOUS"
    assert [b["type"] for b in declared["health"]["bindings"] if b["direction"] == "OUT"] == ["http"]


def test_the_api_takes_every_route_with_a_function_key(declared: dict[str, dict[str, Any]]) -> None:
    http = trigger(declared, "http_api")
    assert http["route"] == "{*route}"
    assert sorted(http["methods"]) == ["GET", "POST"]
    assert http["authLevel"] == "FUNCTION"
    assert [b["type"] for b in declared["http_api"]["bindings"] if b["direction"] == "OUT"] == ["http"]


@pytest.mark.parametrize(("name", "queue"), sorted(QUEUES.items()))
def test_queue_triggers_read_their_queue_name_from_app_settings(
        declared: dict[str, dict[str, Any]], name: str, queue: str) -> None:
    binding = trigger(declared, name)
    assert binding["queueName"] == queue
    assert binding["connection"] == "AzureWebJobsStorage"
    assert declared[name]["bindings"] == [binding], "a queue trigger has no other binding"


def test_specs_uploaded_to_the_requests_container_trigger_a_submission(
        declared: dict[str, dict[str, Any]]) -> None:
    binding = trigger(declared, "submit_from_blob")
    assert binding["path"] == "%PARALLELRUN_REQUESTS_CONTAINER%/{name}"
    assert binding["connection"] == "AzureWebJobsStorage"
    assert binding["source"] == "EventGrid"
    assert declared["submit_from_blob"]["bindings"] == [binding]


def test_every_app_setting_in_a_binding_resolves_to_the_settings_resource(
        declared: dict[str, dict[str, Any]]) -> None:
    settings = Settings().with_namespace("ns1")
    expressions = {name: trigger(declared, name).get("queueName") or trigger(declared, name).get("path")
                   for name in ("plan", "score_batch", "finalize", "submit_from_blob")}
    resolved = {name: settings.resolve(expr.split("/", 1)[0]) for name, expr in expressions.items()}
    assert resolved == {"plan": settings.plan_queue, "score_batch": settings.batch_queue,
                        "finalize": settings.finalize_queue,
                        "submit_from_blob": settings.requests_container}
    for expr in expressions.values():
        setting = expr.split("/", 1)[0].strip("%")
        assert setting in RESOURCE_SETTINGS
    defaults = Settings()
    assert defaults.resolve("%PARALLELRUN_BATCH_QUEUE%") == "parallelrun-batches"
    with pytest.raises(KeyError, match="PARALLELRUN_NOPE"):
        defaults.resolve("%PARALLELRUN_NOPE%")


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted(FUNCTIONS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_trigger_adapters_build_no_storage_clients(path: Path) -> None:
    storage_sdks = sorted(m for m in _imported_modules(path)
                          if m.startswith(("azure.storage", "azure.data")))
    assert storage_sdks == [], f"{path.name} imports {storage_sdks}; use shared.storage instead"


def test_the_adapters_checked_are_the_ones_the_app_registers() -> None:
    registered = {m.split(".", 1)[1] for m in _imported_modules(ROOT / "function_app.py")
                  if m.startswith("functions.")}
    assert registered == {"finalizer", "http_api", "planner", "poison", "submissions", "sweep",
                          "worker"}
    assert registered <= {p.stem for p in FUNCTIONS_DIR.glob("*.py")}


def _run_score_batch(monkeypatch: pytest.MonkeyPatch, body: str) -> tuple:
    import datetime
    import types

    import azure.functions as func

    import functions.worker as adapter

    seen: list[tuple] = []
    worker = types.SimpleNamespace(handle=lambda *args: seen.append(args))
    monkeypatch.setattr(adapter.runtime, "current", lambda: types.SimpleNamespace(worker=worker))
    inserted = datetime.datetime(2026, 1, 1, 12, 0, 7, tzinfo=datetime.UTC)
    msg = func.queue.QueueMessage(body=body.encode(), dequeue_count=2, insertion_time=inserted)
    adapter.score_batch._function._func(msg)
    [args] = seen
    return args


def test_a_try_s_queue_time_starts_when_its_sender_made_the_message_visible(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue's insertion time has one-second resolution; the sender's own clock is finer."""
    batch, dequeue_count, enqueued = _run_score_batch(
        monkeypatch, '{"job_id":"j1","batch":3,"ready_at":1767268807.25}')
    assert (batch.job_id, batch.batch, dequeue_count, enqueued) == ("j1", 3, 2, 1767268807.25)


def test_a_message_without_ready_at_falls_back_to_the_insertion_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, enqueued = _run_score_batch(monkeypatch, '{"job_id":"j1","batch":3}')
    assert enqueued == 1767268807.0
