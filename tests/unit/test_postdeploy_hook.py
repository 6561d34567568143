"""azd's postdeploy hook (infra/hooks/postdeploy.py), run as azd runs it, against a recording ``az``.

There is no Azure here: the ``az`` on the hook's PATH is a small script that records every call
and answers like the Azure CLI would (the ``blobs_extension`` key appears after a few polls, the
deployment succeeds or fails). What is checked is the hook's side of the contract: which commands
it runs with which arguments, that it waits for the key without printing it, that a re-run does
the same thing again, and that every failure names its cause and exits non-zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "infra" / "hooks" / "postdeploy.py"
TEMPLATE = ROOT / "infra" / "modules" / "eventgrid-subscription.bicep"
KEY = "s3cr3t-blobs-extension-key"
ENV = {"AZURE_RESOURCE_GROUP": "rg-dev", "AZURE_FUNCTION_APP_NAME": "func-parallelrun-abc",
       "EVENT_GRID_SYSTEM_TOPIC_NAME": "evgt-parallelrun-abc",
       "PARALLELRUN_REQUESTS_CONTAINER": "parallelrun-requests",
       "SERVICE_API_URI": "https://func-parallelrun-abc.azurewebsites.net",
       "AZURE_STORAGE_ACCOUNT_NAME": "stparallelrunabc"}

FAKE_AZ = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    state = os.environ["FAKE_AZ_STATE"]
    with open(os.path.join(state, "calls.jsonl"), "a") as fh:
        fh.write(json.dumps(sys.argv[1:]) + "\\n")
    if sys.argv[1:4] == ["functionapp", "keys", "list"] and os.environ.get("FAKE_AZ_KEYS_ERROR"):
        print("ERROR: " + os.environ["FAKE_AZ_KEYS_ERROR"], file=sys.stderr)
        sys.exit(1)
    elif sys.argv[1:4] == ["functionapp", "keys", "list"]:
        polls = os.path.join(state, "polls")
        n = int(open(polls).read()) if os.path.exists(polls) else 0
        open(polls, "w").write(str(n + 1))
        if n >= int(os.environ["FAKE_AZ_KEY_AFTER"]):
            print(os.environ["FAKE_AZ_KEY"])
        else:
            print("")
    elif sys.argv[1:4] == ["deployment", "group", "create"]:
        sys.exit(int(os.environ.get("FAKE_AZ_DEPLOY_RC", "0")))
    """)


def run_hook(tmp_path: Path, env: dict[str, str], *, key_after: int = 2, deploy_rc: int = 0,
             with_az: bool = True) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    state = tmp_path / "state"
    state.mkdir(parents=True, exist_ok=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if with_az:
        az = bin_dir / "az"
        az.write_text(FAKE_AZ.format(python=sys.executable))
        az.chmod(0o755)
    full = {"PATH": str(bin_dir), "HOME": str(tmp_path), "FAKE_AZ_STATE": str(state),
            "FAKE_AZ_KEY": KEY, "FAKE_AZ_KEY_AFTER": str(key_after),
            "FAKE_AZ_DEPLOY_RC": str(deploy_rc), "PARALLELRUN_KEY_WAIT_S": "3", **env}
    done = subprocess.run([sys.executable, str(HOOK)], env=full, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    log = state / "calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def deployments(calls: list[list[str]]) -> list[list[str]]:
    return [c for c in calls if c[:3] == ["deployment", "group", "create"]]


def option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_it_waits_for_the_key_then_deploys_the_subscription_module(tmp_path: Path) -> None:
    done, calls = run_hook(tmp_path, ENV, key_after=2)
    assert done.returncode == 0, done.stderr
    polls = [c for c in calls if c[:3] == ["functionapp", "keys", "list"]]
    assert len(polls) == 3                      # two empty answers, then the key
    assert option(polls[0], "--resource-group") == "rg-dev"
    assert option(polls[0], "--name") == "func-parallelrun-abc"
    assert option(polls[0], "--query") == "systemKeys.blobs_extension"
    [deploy] = deployments(calls)
    assert calls[-1] == deploy                  # only after the key exists
    assert option(deploy, "--resource-group") == "rg-dev"
    assert Path(option(deploy, "--template-file")) == TEMPLATE
    params = deploy[deploy.index("--parameters") + 1:deploy.index("--output")]
    assert sorted(params) == ["functionAppName=func-parallelrun-abc",
                              "requestsContainerName=parallelrun-requests",
                              "systemTopicName=evgt-parallelrun-abc"]
    assert KEY not in done.stdout + done.stderr + json.dumps(calls)   # never passed nor printed
    assert "https://func-parallelrun-abc.azurewebsites.net/api" in done.stdout
    assert "AzureWebJobsStorage__accountName=stparallelrunabc" in done.stdout


def test_a_second_run_does_the_same_deployment_again(tmp_path: Path) -> None:
    first, calls1 = run_hook(tmp_path / "one", ENV, key_after=0)
    second, calls2 = run_hook(tmp_path / "two", ENV, key_after=0)
    assert first.returncode == second.returncode == 0
    assert deployments(calls1) == deployments(calls2)
    assert option(deployments(calls1)[0], "--name") == "parallelrun-eventgrid-subscription"


def test_missing_outputs_are_named_and_nothing_is_called(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items()
           if k not in ("EVENT_GRID_SYSTEM_TOPIC_NAME", "PARALLELRUN_REQUESTS_CONTAINER")}
    done, calls = run_hook(tmp_path, env)
    assert done.returncode == 2
    assert "EVENT_GRID_SYSTEM_TOPIC_NAME" in done.stderr
    assert "PARALLELRUN_REQUESTS_CONTAINER" in done.stderr
    assert "azd provision" in done.stderr
    assert calls == []


def test_a_key_that_never_appears_stops_the_hook_before_any_deployment(tmp_path: Path) -> None:
    done, calls = run_hook(tmp_path, ENV, key_after=10_000)
    assert done.returncode == 1
    assert "func-parallelrun-abc has no blobs_extension key after 3 s" in done.stderr
    assert "azd hooks run postdeploy" in done.stderr
    assert deployments(calls) == []


def test_an_az_that_cannot_list_keys_is_quoted_when_the_wait_ends(tmp_path: Path) -> None:
    done, calls = run_hook(tmp_path, {**ENV, "FAKE_AZ_KEYS_ERROR": "Please run 'az login' to setup account."})
    assert done.returncode == 1
    assert "The last `az functionapp keys list` failed: ERROR: Please run 'az login'" in done.stderr
    assert deployments(calls) == []


def test_a_failed_deployment_fails_the_hook_with_az_s_exit_code(tmp_path: Path) -> None:
    done, calls = run_hook(tmp_path, ENV, key_after=0, deploy_rc=3)
    assert done.returncode == 3
    assert "deploying eventgrid-subscription.bicep failed (az exit code 3)" in done.stderr
    assert len(deployments(calls)) == 1


def test_without_the_azure_cli_it_says_so(tmp_path: Path) -> None:
    done, _ = run_hook(tmp_path, ENV, with_az=False)
    assert done.returncode == 2
    assert "the Azure CLI (az) is not on PATH" in done.stderr


@pytest.mark.parametrize("value", ["soon", "-"])
def test_a_bad_wait_setting_is_named(tmp_path: Path, value: str) -> None:
    done, calls = run_hook(tmp_path, {**ENV, "PARALLELRUN_KEY_WAIT_S": value})
    assert done.returncode == 2
    assert f"PARALLELRUN_KEY_WAIT_S must be a number of seconds, not {value!r}" in done.stderr
    assert calls == []


def test_it_runs_with_the_standard_library_only() -> None:
    """azd runs it with the machine's python3, before any virtualenv exists."""
    done = subprocess.run([sys.executable, "-I", "-S", "-c",
                           f"import runpy; runpy.run_path({str(HOOK)!r}, run_name='not_main')"],
                          capture_output=True, text=True, timeout=30, env={"PATH": os.defpath})
    assert done.returncode == 0, done.stderr
