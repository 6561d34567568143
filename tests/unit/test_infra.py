"""The Azure deployment agrees with the code it deploys, checked by parsing (no Azure, no compiler).

Each check runs on this repository (no problems) and on a copy broken on purpose, where it must
name what is wrong: a Bicep file that does not parse, an app setting missing or unknown, a role
missing or with the wrong id, a queue, container or table the code uses that is not created, an
Event Grid filter on the wrong container, azure.yaml naming another service, a .funcignore that
ships tests or drops the app's files.
"""

from __future__ import annotations

import copy
import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit import infra_checks as checks

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("infra", "azure.yaml", ".funcignore", "function_app.py", "host.json", "requirements.txt",
          "functions", "shared")


@functools.cache
def app_declarations() -> dict[str, dict[str, Any]]:
    """This repository's function declarations, read once per test process."""
    return checks.load_declared(ROOT)


@pytest.fixture()
def declared() -> dict[str, dict[str, Any]]:
    return copy.deepcopy(app_declarations())


def bindings(root: Path) -> list[str]:
    return checks.binding_problems(root, app_declarations())


def broken_copy(tmp_path: Path, relative: str, old: str, new: str) -> Path:
    """A copy of what the checks read, with ``old`` replaced by ``new`` in one file."""
    root = tmp_path / "repo"
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    target = root / relative
    text = target.read_text()
    assert old in text, f"{old!r} is not in {relative}: the mutation no longer applies"
    target.write_text(text.replace(old, new, 1))
    return root


# -- this repository -------------------------------------------------------------------------------

def test_every_bicep_file_parses() -> None:
    assert len(checks.bicep_files(ROOT)) >= 8
    assert checks.parse_problems(ROOT) == []


def test_the_app_settings_are_exactly_those_the_code_and_the_host_read() -> None:
    assert checks.setting_problems(ROOT) == []
    settings = checks.app_settings(ROOT)
    assert set(settings) == (checks.settings_needed_in_azure() | checks.HOST_SETTINGS
                             | {"AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__queueServiceUri",
                                "AzureWebJobsStorage__tableServiceUri"})


def test_every_role_the_code_needs_is_granted_with_its_built_in_id() -> None:
    assert checks.role_problems(ROOT) == []


def test_the_queues_containers_tables_and_event_grid_filter_match_the_triggers(
        declared: dict[str, dict[str, Any]]) -> None:
    created = checks.created_resources(ROOT)
    assert created["queue"] == {"parallelrun-plan", "parallelrun-batches", "parallelrun-finalize",
                                "parallelrun-plan-poison", "parallelrun-batches-poison",
                                "parallelrun-finalize-poison"}
    assert created["table"] == {"parallelrunledger", "parallelrunjobs", "parallelrunmodels"}
    assert created["container"] == {"parallelrun", "parallelrun-requests", "parallelrun-outputs"}
    assert checks.binding_problems(ROOT, declared) == []


def test_azure_yaml_names_the_function_app_service_and_its_hook() -> None:
    assert checks.azd_problems(ROOT) == []


def test_the_package_holds_the_app_and_nothing_of_the_developer_s() -> None:
    assert checks.package_problems(ROOT) == []
    kept = checks.packaged(ROOT, checks.repository_files(ROOT))
    assert {"function_app.py", "host.json", "requirements.txt", "functions/worker.py",
            "shared/settings.py", "shared/service/api.py"} <= kept
    assert not any(p.startswith(("tests/", "shared/cli/", "shared/local/", "infra/")) for p in kept)


# -- copies broken on purpose ----------------------------------------------------------------------

BROKEN: list[tuple[str, str, str, str, Callable[[Path], list[str]], str]] = [
    # id, file, old, new, check, what the problem must name
    ("bicep-syntax", checks.FUNCTIONAPP, "resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {",
     "resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {{", checks.parse_problems,
     "infra/modules/functionapp.bicep does not parse"),
    ("setting-removed", checks.FUNCTIONAPP, "name: 'PARALLELRUN_MODELS_TABLE'",
     "name: 'PARALLELRUN_MODELS_TABLES'", checks.setting_problems,
     "does not set PARALLELRUN_MODELS_TABLE"),
    ("setting-unknown", checks.FUNCTIONAPP, "name: 'PARALLELRUN_MODELS_TABLE'",
     "name: 'PARALLELRUN_MODELS_TABLES'", checks.setting_problems,
     "sets PARALLELRUN_MODELS_TABLES, which neither Settings"),
    ("schedule-removed", checks.FUNCTIONAPP, "name: 'PARALLELRUN_SWEEP_SCHEDULE'",
     "name: 'SWEEP_SCHEDULE'", checks.setting_problems, "does not set PARALLELRUN_SWEEP_SCHEDULE"),
    ("flex-rejected", checks.FUNCTIONAPP, "name: 'AZURE_CLIENT_ID'",
     "name: 'FUNCTIONS_WORKER_RUNTIME'", checks.setting_problems,
     "FUNCTIONS_WORKER_RUNTIME, which Flex Consumption rejects"),
    ("name-differs", checks.MAIN, "ledgerTable: 'parallelrunledger'",
     "ledgerTable: 'parallelrunledger2'", checks.setting_problems,
     "PARALLELRUN_LEDGER_TABLE is 'parallelrunledger2' in Azure"),
    ("role-removed", checks.RBAC,
     "  roles.storageQueueDataContributor\n  roles.storageTableDataContributor\n]\n\n// No",
     "  roles.storageTableDataContributor\n]\n\n// No", checks.role_problems,
     "grant the app (appPrincipalId) Storage Queue Data Contributor"),
    ("role-wrong-id", checks.RBAC, "storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'",
     "storageTableDataContributor: '76199698-9eea-4c19-bc75-cec21354c6b6'", checks.role_problems,
     "is Storage Table Data Reader, not Storage Table Data Contributor"),
    ("operator-role-removed", checks.RBAC,
     "  roles.storageBlobDataContributor\n  roles.storageQueueDataContributor",
     "  roles.storageQueueDataContributor", checks.role_problems,
     "grant the operator (operatorPrincipalId) Storage Blob Data Contributor"),
    ("operator-not-passed", checks.MAIN, "operatorPrincipalId: principalId",
     "operatorPrincipalId: ''", checks.role_problems, "azd's principalId"),
    ("queue-renamed", checks.MAIN, "      resourceNames.planQueue\n      resourceNames.batchQueue",
     "      'parallelrun-planning'\n      resourceNames.batchQueue", bindings,
     "creates no queue 'parallelrun-plan', which the queue trigger of plan"),
    ("poison-suffix", checks.STORAGE, "'${q}-poison'", "'${q}-dead'",
     bindings,
     "creates no queue 'parallelrun-batches-poison', which the queue trigger of batch_poison"),
    ("table-dropped", checks.MAIN, "      resourceNames.indexTable\n", "",
     bindings,
     "creates no table 'parallelrunjobs', which Settings.tables"),
    ("container-dropped", checks.MAIN, "      resourceNames.requestsContainer\n      resourceNames.outputContainer",
     "      resourceNames.outputContainer", bindings,
     "creates no container 'parallelrun-requests', which the blob trigger of submit_from_blob"),
    ("filter-container", checks.SUBSCRIPTION, "containers/${requestsContainerName}/blobs/",
     "containers/parallelrun-uploads/blobs/", bindings,
     "filters subjects beginning '/blobServices/default/containers/parallelrun-uploads/blobs/'"),
    ("filter-function", checks.SUBSCRIPTION, "param functionName string = 'submit_from_blob'",
     "param functionName string = 'submit'", bindings,
     "delivers to 'submit'"),
    ("hook-output-missing", checks.MAIN, "output PARALLELRUN_REQUESTS_CONTAINER string",
     "output REQUESTS_CONTAINER string", checks.azd_problems,
     "needs PARALLELRUN_REQUESTS_CONTAINER, which infra/main.bicep does not output"),
    ("service-renamed", "azure.yaml", "  api:\n", "  web:\n", checks.azd_problems,
     "azd-service-name='api', but azure.yaml's service is 'web'"),
    ("service-host", "azure.yaml", "host: function", "host: appservice", checks.azd_problems,
     "has host 'appservice'"),
    ("hook-unwired", "azure.yaml", "run: python infra/hooks/postdeploy.py",
     "run: echo done", checks.azd_problems, "postdeploy (windows) does not run"),
    ("azd-parameter", "infra/main.parameters.json", "${AZURE_PRINCIPAL_ID}", "", checks.azd_problems,
     "gives principalId ''"),
    ("package-ships-tools", ".funcignore", "/shared/local/\n", "", checks.package_problems,
     ".funcignore ships shared/local/"),
    ("package-drops-ui", ".funcignore", "# local data", "ui/\n# local data", checks.package_problems,
     "leaves out shared/service/ui/index.html"),
    ("package-ships-venv", ".funcignore", ".venv/\n", "", checks.package_problems,
     ".funcignore ships .venv/lib"),
    ("package-ships-azd-state", ".funcignore", ".azure/\n", "", checks.package_problems,
     ".funcignore ships .azure/dev/.env"),
]


@pytest.mark.parametrize(("relative", "old", "new", "check", "named"),
                         [pytest.param(*case[1:], id=case[0]) for case in BROKEN])
def test_a_broken_copy_fails_naming_the_fault(tmp_path: Path, relative: str, old: str, new: str,
                                              check: Callable[[Path], list[str]], named: str) -> None:
    problems = check(broken_copy(tmp_path, relative, old, new))
    assert any(named in p for p in problems), problems


def test_a_missing_metrics_role_fails(tmp_path: Path) -> None:
    text = (ROOT / checks.RBAC).read_text()
    start = text.index("resource appMetrics")
    end = text.index("}\n\n", text.index("principalType", start)) + 3
    root = broken_copy(tmp_path, checks.RBAC, text[start:end], "")
    assert any("Monitoring Metrics Publisher on Microsoft.Insights/components" in p
               for p in checks.role_problems(root))


def test_declarations_changed_in_the_app_fail(declared: dict[str, dict[str, Any]]) -> None:
    changed = copy.deepcopy(declared)
    changed["plan"]["bindings"][0]["queueName"] = "%PARALLELRUN_PLAN_QUEUE%-v2"
    changed["submit_from_blob"]["bindings"][0]["source"] = "LogsAndContainerScan"
    problems = checks.binding_problems(ROOT, changed)
    assert any("no queue 'parallelrun-plan-v2', which the queue trigger of plan" in p for p in problems)
    assert any("submit_from_blob: a blob trigger on Flex Consumption needs source=EventGrid" in p
               for p in problems)
