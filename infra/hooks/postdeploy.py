"""azd postdeploy hook: subscribe ``submit_from_blob`` to blobs created in the requests container.

Why a hook and not main.bicep: the subscription's webhook carries the app's ``blobs_extension``
system key, which the Functions host creates only when it first starts with the Event Grid blob
trigger loaded (after the code is deployed), and Event Grid validates the webhook when the
subscription is created. So after every ``azd deploy`` (and ``azd up``) this script

1. reads the names azd saved from main.bicep's outputs (they are in its environment);
2. waits until ``az functionapp keys list`` shows the ``blobs_extension`` key (asking for the keys
   starts the host if it is not running); the key is never printed;
3. deploys ``infra/modules/eventgrid-subscription.bicep``, which reads the key itself with
   ``listKeys`` and builds the webhook from the app's default host name. Deploying it again updates
   the same subscription in place, so re-runs are harmless (``azd hooks run postdeploy`` after
   rotating the key).

Standard library only (it runs with any Python 3.9+, before or without the project's virtualenv);
needs the Azure CLI (``az``), logged in to the same subscription as azd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "modules" / "eventgrid-subscription.bicep"
DEPLOYMENT_NAME = "parallelrun-eventgrid-subscription"
# main.bicep output -> what it is (all needed; azd exports its outputs to hooks)
REQUIRED = {
    "AZURE_RESOURCE_GROUP": "resource group",
    "AZURE_FUNCTION_APP_NAME": "Function App",
    "EVENT_GRID_SYSTEM_TOPIC_NAME": "Event Grid system topic on the storage account",
    "PARALLELRUN_REQUESTS_CONTAINER": "container whose new blobs are job requests",
}
# parameter of eventgrid-subscription.bicep -> the main.bicep output it is given
PARAMETERS = {
    "systemTopicName": "EVENT_GRID_SYSTEM_TOPIC_NAME",
    "functionAppName": "AZURE_FUNCTION_APP_NAME",
    "requestsContainerName": "PARALLELRUN_REQUESTS_CONTAINER",
}
WAIT_SETTING = "PARALLELRUN_KEY_WAIT_S"   # how long to wait for the blobs_extension key
DEFAULT_WAIT_S = 300.0


class HookError(Exception):
    """A message for the operator and the exit code to leave with."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    print(f"postdeploy: {message}", flush=True)


def settings(env: Mapping[str, str]) -> dict[str, str]:
    """The values the hook needs, or an error naming every missing one."""
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise HookError("missing " + ", ".join(f"{n} ({REQUIRED[n]})" for n in missing)
                        + ": run `azd provision` first (main.bicep outputs them), or set them", 2)
    return {name: env[name] for name in REQUIRED}


def az(args: Sequence[str], *, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the Azure CLI (``az.cmd`` on Windows, hence ``which``)."""
    exe = shutil.which("az")
    if exe is None:
        raise HookError("the Azure CLI (az) is not on PATH: install it and `az login`", 2)
    return subprocess.run([exe, *args], text=True, capture_output=capture, check=False)


def blobs_extension_key(group: str, app: str) -> tuple[bool, str]:
    """Whether the key exists yet, and what az said if it could not tell (never the key)."""
    done = az(["functionapp", "keys", "list", "--resource-group", group, "--name", app,
               "--query", "systemKeys.blobs_extension", "--output", "tsv"])
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return False, (lines[-1].strip()[:300] if lines else f"exit code {done.returncode}")
    return bool(done.stdout.strip()), ""


def wait_for_key(group: str, app: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    pause = max(0.1, min(10.0, wait_s / 10))
    say(f"waiting for the blobs_extension key of {app} (the host creates it when it starts "
        f"with submit_from_blob; at most {wait_s:.0f} s)")
    while True:
        exists, error = blobs_extension_key(group, app)
        if exists:
            return
        if time.monotonic() >= deadline:
            said = f" The last `az functionapp keys list` failed: {error}." if error else ""
            raise HookError(
                f"{app} has no blobs_extension key after {wait_s:.0f} s.{said} Check that you are "
                "logged in (`az account show`), that the code is deployed (`az functionapp "
                f"function list -g {group} -n {app} -o table` lists submit_from_blob) and the "
                "app's logs in Application Insights; then run `azd hooks run postdeploy` (or "
                f"wait longer: set {WAIT_SETTING})")
        time.sleep(pause)


def deploy_subscription(values: Mapping[str, str]) -> None:
    done = az(["deployment", "group", "create",
               "--resource-group", values["AZURE_RESOURCE_GROUP"],
               "--name", DEPLOYMENT_NAME,
               "--template-file", str(TEMPLATE),
               "--parameters", *(f"{param}={values[output]}" for param, output in PARAMETERS.items()),
               "--output", "none"], capture=False)
    if done.returncode != 0:
        raise HookError(f"deploying {TEMPLATE.name} failed (az exit code {done.returncode}); "
                        "fix what az reports, then run `azd hooks run postdeploy`", done.returncode)


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        values = settings(env)
        try:
            wait_s = float(env.get(WAIT_SETTING) or DEFAULT_WAIT_S)
        except ValueError:
            raise HookError(f"{WAIT_SETTING} must be a number of seconds, "
                            f"not {env[WAIT_SETTING]!r}", 2) from None
        group, app = values["AZURE_RESOURCE_GROUP"], values["AZURE_FUNCTION_APP_NAME"]
        wait_for_key(group, app, wait_s)
        deploy_subscription(values)
    except HookError as exc:
        print(f"postdeploy: error: {exc}", file=sys.stderr, flush=True)
        return exc.code
    say(f"Event Grid subscription ready: blobs created in "
        f"{values['PARALLELRUN_REQUESTS_CONTAINER']} are submitted by submit_from_blob")
    base = env.get("SERVICE_API_URI")
    if base:
        say(f"API: {base}/api  (GET {base}/api/health answers without a key)")
    say(f"function key: az functionapp keys list -g {group} -n {app} "
        "--query functionKeys.default -o tsv")
    account = env.get("AZURE_STORAGE_ACCOUNT_NAME")
    if account:
        say(f"CLI: export AzureWebJobsStorage__accountName={account}  (your az/azd login)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
