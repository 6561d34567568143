"""Checks that the Azure deployment (``infra/``, ``azure.yaml``, ``.funcignore``) agrees with the code.

No Bicep compiler or Azure here: the templates are parsed with ``pycep-parser`` and the few
expressions that name things (string interpolation, ``resourceNames.planQueue``, lists, ``concat``,
``union``) are evaluated; anything else stays unresolved and never matches. Every check takes the
root of a repository copy and returns the problems it found, each naming the file and the setting,
role, queue, container, table or path at fault, so tests can run it on a deliberately broken copy.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from shared.limits import Limits
from shared.settings import BINDING_SETTINGS, RESOURCE_SETTINGS, Settings

INFRA = "infra"
MAIN = "infra/main.bicep"
FUNCTIONAPP = "infra/modules/functionapp.bicep"
STORAGE = "infra/modules/storage.bicep"
RBAC = "infra/modules/rbac.bicep"
SUBSCRIPTION = "infra/modules/eventgrid-subscription.bicep"
HOOK = "infra/hooks/postdeploy.py"

# App settings the Functions host, the Azure SDKs or Application Insights read (not Settings):
# identity-based host storage, the identity DefaultAzureCredential picks, Entra-authenticated
# telemetry. Settings itself reads AzureWebJobsStorage__accountName and the service URIs.
HOST_SETTINGS = frozenset({
    "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
})
# Flex Consumption takes these from functionAppConfig and rejects an app that sets them.
FLEX_REJECTS = ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE",
                "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "WEBSITE_NODE_DEFAULT_VERSION")

# Built-in role definition ids (the same in every tenant; Azure's "built-in roles" reference).
BUILT_IN_ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Blob Delegator": "db58b8e5-c6ad-4a2a-8342-4190687cbf4a",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Queue Data Message Processor": "8a0f0c08-91a1-4084-bc3d-661d67233fed",
    "Storage Queue Data Message Sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "Storage Queue Data Reader": "19e7f393-937e-4f77-808e-94535e297925",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Table Data Reader": "76199698-9eea-4c19-bc75-cec21354c6b6",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

# What the code does, in one place: who needs which built-in role on which resource, and why.
NEEDED_ROLES: dict[str, dict[str, tuple[str, str]]] = {
    "app": {   # the Function App's user-assigned identity (rbac.bicep's appPrincipalId)
        "Storage Blob Data Owner": (
            "Microsoft.Storage/storageAccounts",
            "identity-based AzureWebJobsStorage (the host's leases, timer and blob-trigger "
            "receipts; Owner is what the Functions host documents), the Flex deployment package, "
            "ParallelRun's blobs (snapshots, models, specs, inputs, staged and committed outputs, "
            "logs) and the user delegation key behind Storage.read_sas "
            "(blobServices/generateUserDelegationKey/action)"),
        "Storage Queue Data Contributor": (
            "Microsoft.Storage/storageAccounts",
            "queue triggers receive and delete messages, the host moves failed ones to -poison, "
            "the planner, workers and sweep enqueue, Storage.ensure creates queues (Message "
            "Processor alone could neither send nor create)"),
        "Storage Table Data Contributor": (
            "Microsoft.Storage/storageAccounts",
            "the ledger, the job index and the model registry: conditional batch writes, upserts, "
            "queries, table creation"),
        "Monitoring Metrics Publisher": (
            "Microsoft.Insights/components",
            "telemetry with APPLICATIONINSIGHTS_AUTHENTICATION_STRING (local auth is off)"),
    },
    "operator": {   # principalId: whoever runs azd and the parallelrun CLI against the account
        "Storage Blob Data Contributor": (
            "Microsoft.Storage/storageAccounts",
            "upload inputs, source snapshots and models, read outputs, create containers, "
            "user delegation SAS (generateUserDelegationKey is in Contributor)"),
        "Storage Queue Data Contributor": (
            "Microsoft.Storage/storageAccounts", "submit enqueues the first planning message"),
        "Storage Table Data Contributor": (
            "Microsoft.Storage/storageAccounts", "submit, status, jobs, cancel, model register/list"),
    },
}
PRINCIPALS = {"app": "appPrincipalId", "operator": "operatorPrincipalId"}


# -- Bicep reading ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Unresolved:
    """An expression this reader does not evaluate (a module output, a function call ...)."""

    text: str


class Bicep:
    """One parsed ``.bicep`` file and the values of its parameters' defaults and variables."""

    def __init__(self, root: Path, relative: str) -> None:
        self.relative = relative
        self.doc = parse_bicep(root / relative)
        self.scope: dict[str, Any] = {name: p.get("default") for name, p in self.params.items()
                                      if p.get("default") is not None}
        self.scope.update({name: v["value"] for name, v in self.doc.get("variables", {}).items()})

    @property
    def params(self) -> dict[str, Any]:
        return self.doc.get("parameters", {})

    @property
    def resources(self) -> dict[str, Any]:
        return self.doc.get("resources", {})

    @property
    def modules(self) -> dict[str, Any]:
        return self.doc.get("modules", {})

    @property
    def outputs(self) -> dict[str, Any]:
        return self.doc.get("outputs", {})

    def config(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A resource's body, whether or not it is a ``[for ...]`` loop."""
        body = resource["config"]
        return body["config"] if "loop_type" in body else body

    def value(self, expr: Any, depth: int = 0) -> Any:
        """``expr`` evaluated as far as this reader can (strings, lists, objects, accessors)."""
        if depth > 20:
            return Unresolved(str(expr))
        if isinstance(expr, str):
            if expr in self.scope:
                return self.value(self.scope[expr], depth + 1)
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._interpolate(m, depth), expr)
        if isinstance(expr, list):
            return [self.value(x, depth + 1) for x in expr]
        if isinstance(expr, dict) and "operator" in expr:
            op = expr["operator"]
            if op["type"] == "property_accessor":
                return self._path(accessor_path(expr), depth)
            return Unresolved(str(expr))
        if isinstance(expr, dict) and "function" in expr:
            fn = expr["function"]
            args = [self.value(a, depth + 1) for a in fn["parameters"].values()]
            if fn["type"] == "concat" and all(isinstance(a, list) for a in args):
                return [x for a in args for x in a]
            if fn["type"] == "concat" and all(isinstance(a, str) for a in args):
                return "".join(args)
            if fn["type"] == "union" and all(isinstance(a, dict) for a in args):
                return {k: v for a in args for k, v in a.items()}
            return Unresolved(str(expr))
        if isinstance(expr, dict):   # an object; quoted keys ('azd-service-name') unquoted
            return {k.strip("'"): self.value(v, depth + 1) for k, v in expr.items()}
        return expr

    def _path(self, path: list[str], depth: int) -> Any:
        if not path or path[0] not in self.scope:
            return Unresolved(".".join(path))
        current = self.value(path[0], depth + 1)
        for key in path[1:]:
            if not isinstance(current, dict) or key not in current:
                return Unresolved(".".join(path))
            current = self.value(current[key], depth + 1)
        return current

    def _interpolate(self, match: re.Match[str], depth: int) -> str:
        resolved = self._path(match.group(1).strip().split("."), depth + 1)
        return resolved if isinstance(resolved, str) else match.group(0)


@cache
def _parser() -> Any:
    from pycep import BicepParser
    return BicepParser()   # Lark keeps the built grammar in a temporary file: later runs start fast


def parse_bicep(path: Path) -> dict[str, Any]:
    """The parsed file (a deep copy: callers may not change what other checks read)."""
    import copy
    return copy.deepcopy(_parse_text(path.read_text()))


@cache
def _parse_text(text: str) -> dict[str, Any]:
    return _parser().parse(text=text)


def accessor_path(expr: Any) -> list[str]:
    """``a.b.c`` (nested property accessors) as ``["a", "b", "c"]``."""
    if isinstance(expr, str):
        return [expr]
    if isinstance(expr, dict) and expr.get("operator", {}).get("type") == "property_accessor":
        ops = expr["operator"]["operands"]
        return accessor_path(ops["operand_1"]) + accessor_path(ops["operand_2"])
    return [str(expr)]


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)


def app_settings(root: Path) -> dict[str, Any]:
    """The app settings functionapp.bicep sets: name -> value (as far as it resolves)."""
    module = Bicep(root, FUNCTIONAPP)
    return {s["name"]: s["value"] for s in module.scope["baseAppSettings"]}


# -- the checks ------------------------------------------------------------------------------------

def bicep_files(root: Path) -> list[Path]:
    return sorted((root / INFRA).rglob("*.bicep"))


def parse_problems(root: Path) -> list[str]:
    problems: list[str] = []
    for path in bicep_files(root):
        try:
            parse_bicep(path)
        except Exception as exc:  # noqa: BLE001 - any parser error is the finding
            problems.append(f"{path.relative_to(root)} does not parse: {type(exc).__name__}: {exc}")
    return problems


def settings_read() -> set[str]:
    """Every app setting :class:`Settings` reads (its fields and the limits), by name."""
    names = {Settings.env_name(f.name) for f in dataclasses.fields(Settings) if f.name != "limits"}
    return names | set(Limits().to_env())


def settings_needed_in_azure() -> set[str]:
    """What Azure must set: the names bindings and resources are read from, and the account."""
    return set(RESOURCE_SETTINGS) | set(BINDING_SETTINGS) | {"AzureWebJobsStorage__accountName"}


def setting_problems(root: Path) -> list[str]:
    settings = app_settings(root)
    read = settings_read()
    problems = [f"{FUNCTIONAPP} sets {name}, which neither Settings (shared/settings.py) nor the "
                "Functions host reads" for name in sorted(settings)
                if name not in read and name not in HOST_SETTINGS]
    problems += [f"{FUNCTIONAPP} does not set {name}, which Settings reads and Azure needs"
                 for name in sorted(settings_needed_in_azure() - set(settings))]
    problems += [f"{FUNCTIONAPP} sets {name}, which Flex Consumption rejects"
                 for name in sorted(settings) if name.startswith(FLEX_REJECTS)]
    # The values the code's defaults name are the values Azure gets (the README's table).
    main = Bicep(root, MAIN)
    names = main.value("resourceNames")
    defaults = Settings()
    for setting, field in RESOURCE_SETTINGS.items():
        given = settings.get(setting)
        if isinstance(given, dict):   # resourceNames.<key> in functionapp.bicep
            given = names.get(accessor_path(given)[-1]) if isinstance(names, dict) else None
        if setting in settings and given != getattr(defaults, field):
            problems.append(f"{setting} is {given!r} in Azure but Settings' default is "
                            f"{getattr(defaults, field)!r}")
    schedule = settings.get("PARALLELRUN_SWEEP_SCHEDULE")
    if schedule is not None and schedule != defaults.sweep_schedule:
        problems.append(f"PARALLELRUN_SWEEP_SCHEDULE is {schedule!r} in Azure but Settings' "
                        f"default is {defaults.sweep_schedule!r}")
    return problems


def _role_ids(rbac: Bicep, expr: Any) -> set[str]:
    """The role definition ids an expression refers to through ``roles.<name>``."""
    roles = rbac.value("roles")
    found = set()
    for node in walk(expr):
        path = accessor_path(node) if isinstance(node, dict) and "operator" in node else []
        if len(path) == 2 and path[0] == "roles" and isinstance(roles, dict):
            found.add(roles.get(path[1], f"roles.{path[1]}"))
    return found


def role_problems(root: Path) -> list[str]:
    rbac = Bicep(root, RBAC)
    problems: list[str] = []
    names_by_id = {guid: name for name, guid in BUILT_IN_ROLES.items()}
    roles = rbac.value("roles")
    for key, guid in (roles.items() if isinstance(roles, dict) else ()):
        name = names_by_id.get(guid)
        label = re.sub(r"(?<!^)(?=[A-Z])", " ", key[0].upper() + key[1:])
        if name is None:
            problems.append(f"{RBAC}: roles.{key} = {guid} is not a built-in role this check knows")
        elif name != label:
            problems.append(f"{RBAC}: roles.{key} = {guid} is {name}, not {label}")
    granted: dict[str, set[tuple[str, str]]] = {who: set() for who in PRINCIPALS}
    for resource in rbac.resources.values():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        body = rbac.config(resource)
        principal = body["properties"]["principalId"]
        who = next((w for w, p in PRINCIPALS.items() if p == principal), None)
        loop = resource["config"].get("loop_type")
        expr = rbac.scope.get(loop["detail"]["array_name"]) if loop else body["properties"]
        scope = rbac.resources.get(body.get("scope", ""), {}).get("type", "(resource group)")
        for guid in _role_ids(rbac, expr):
            if who:
                granted[who].add((names_by_id.get(guid, guid), scope))
    for who, needs in NEEDED_ROLES.items():
        for role, (scope, why) in needs.items():
            if (role, scope) not in granted[who]:
                problems.append(f"{RBAC} does not grant the {who} ({PRINCIPALS[who]}) {role} on "
                                f"{scope}, which it needs: {why}")
    main = Bicep(root, MAIN)
    params = main.modules["rbac"]["config"]["params"]
    if accessor_path(params.get("appPrincipalId")) != ["identity", "outputs", "principalId"]:
        problems.append(f"{MAIN} does not give rbac the app identity's principalId")
    if params.get("operatorPrincipalId") != "principalId":
        problems.append(f"{MAIN} does not give rbac azd's principalId as operatorPrincipalId")
    return problems


def load_declared(root: Path) -> dict[str, dict[str, Any]]:
    """Every function's name -> its function.json, from a fresh copy of ``function_app.py``'s app
    (``get_functions()`` may be called once per app object; other tests call it on theirs)."""
    import json

    spec = importlib.util.spec_from_file_location("_function_app_for_infra", root / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {f.get_function_name(): json.loads(f.get_function_json())
            for f in module.app.get_functions()}


def _resolved(expression: str) -> str:
    """A binding expression with every ``%SETTING%`` replaced as the host would (defaults)."""
    defaults = Settings()
    return re.sub(r"%[^%]+%", lambda m: defaults.resolve(m.group(0)), expression)


def _triggers(declared: Mapping[str, dict[str, Any]], kind: str) -> Iterator[tuple[str, dict]]:
    for name, function in sorted(declared.items()):
        for binding in function["bindings"]:
            if binding["direction"] == "IN" and binding["type"] == kind:
                yield name, binding


def created_resources(root: Path) -> dict[str, set[str]]:
    """The queues, containers and tables storage.bicep creates with main.bicep's arguments."""
    main, storage = Bicep(root, MAIN), Bicep(root, STORAGE)
    args = {k: main.value(v) for k, v in main.modules["storage"]["config"]["params"].items()}
    names = {kind: {x for x in args.get(param, storage.value(param)) if isinstance(x, str)}
             for kind, param in (("queue", "queueNames"), ("container", "containerNames"),
                                 ("table", "tableNames"))}
    loops = {r["config"]["loop_type"]["detail"]["array_name"]: r["type"]
             for r in storage.resources.values() if "loop_type" in r["config"]}
    queues = set()
    if loops.get("allQueueNames", "").endswith("/queues"):
        for node in walk(storage.scope.get("allQueueNames")):
            if isinstance(node, dict) and node.get("type") == "lambda_expression":
                item, text = node["detail"]["var_1"], node["detail"]["expression"]
                queues |= {text.replace(f"${{{item}}}", q) for q in names["queue"]}
            elif node == "queueNames":
                queues |= names["queue"]
    names["queue"] = queues
    if not loops.get("containerNames", "").endswith("/containers"):
        names["container"] = set()
    if not loops.get("tableNames", "").endswith("/tables"):
        names["table"] = set()
    return names


def binding_problems(root: Path, declared: Mapping[str, dict[str, Any]]) -> list[str]:
    created = created_resources(root)
    problems: list[str] = []
    wanted: dict[str, dict[str, str]] = {"queue": {}, "container": {}, "table": {}}
    for name, binding in _triggers(declared, "queueTrigger"):
        wanted["queue"][_resolved(binding["queueName"])] = f"the queue trigger of {name}"
    defaults = Settings()
    for q in defaults.queues:
        wanted["queue"].setdefault(q, "Settings.queues")
        wanted["queue"].setdefault(q + defaults.poison_suffix, "Settings.queues' poison queue")
    for c in defaults.containers:
        wanted["container"][c] = "Settings.containers"
    for t in defaults.tables:
        wanted["table"][t] = "Settings.tables"
    event_grid = []
    for name, binding in _triggers(declared, "blobTrigger"):
        container = _resolved(binding["path"]).split("/", 1)[0]
        wanted["container"][container] = f"the blob trigger of {name}"
        if binding.get("source") != "EventGrid":
            problems.append(f"{name}: a blob trigger on Flex Consumption needs source=EventGrid, "
                            f"not {binding.get('source')!r}")
        else:
            event_grid.append((name, container))
    for kind, needed in wanted.items():
        problems += [f"{STORAGE} (with {MAIN}'s names) creates no {kind} {resource!r}, which "
                     f"{who} uses" for resource, who in sorted(needed.items())
                     if resource not in created[kind]]
    settings = app_settings(root)
    for name, function in sorted(declared.items()):
        for binding in function["bindings"]:
            conn = binding.get("connection")
            if conn and not any(s == conn or s.startswith(conn + "__") for s in settings):
                problems.append(f"{name}'s connection {conn} has no {conn}__* app setting")
    problems += _package_container_problems(root)
    problems += _event_grid_problems(root, event_grid)
    return problems


def _package_container_problems(root: Path) -> list[str]:
    app = Bicep(root, FUNCTIONAPP)
    storage = app.config(app.resources["app"])["properties"]["functionAppConfig"]["deployment"]["storage"]
    main = Bicep(root, MAIN)
    passed = main.modules["functionApp"]["config"]["params"].get("deploymentContainerName")
    store = Bicep(root, STORAGE)
    problems: list[str] = []
    if storage.get("value") != "${blobEndpoint}${deploymentContainerName}":
        problems.append(f"{FUNCTIONAPP}: the deployment package is not read from "
                        "the deploymentContainerName container")
    if accessor_path(passed) != ["storage", "outputs", "deploymentContainerName"] or \
            accessor_path(store.outputs.get("deploymentContainerName", {}).get("value")) != \
            ["deploymentContainer", "name"]:
        problems.append(f"{MAIN}: the app package container is not the one {STORAGE} creates")
    return problems


def _hook_module(root: Path) -> Any:
    spec = importlib.util.spec_from_file_location("_postdeploy_for_infra", root / HOOK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event_grid_problems(root: Path, event_grid: list[tuple[str, str]]) -> list[str]:
    """The subscription the hook deploys delivers exactly the EventGrid blob triggers' blobs."""
    if not (root / HOOK).is_file():
        return [f"{HOOK} is missing: nothing deploys {SUBSCRIPTION} for {event_grid}"]
    sub, main, hook = Bicep(root, SUBSCRIPTION), Bicep(root, MAIN), _hook_module(root)
    problems: list[str] = []
    missing = [p for p, d in sub.params.items() if d.get("default") is None and p not in hook.PARAMETERS]
    problems += [f"{HOOK} does not pass {SUBSCRIPTION}'s parameter {p}" for p in missing]
    outputs = {name: main.value(o["value"]) for name, o in main.outputs.items()}
    for param, output in hook.PARAMETERS.items():
        if param not in sub.params:
            problems.append(f"{HOOK} passes {param}, which {SUBSCRIPTION} does not declare")
        if output not in outputs:
            problems.append(f"{HOOK} reads {output}, which {MAIN} does not output")
    body = sub.config(sub.resources["eventSubscription"])["properties"]
    args = {p: outputs.get(o) for p, o in hook.PARAMETERS.items()}
    deployed = Bicep(root, SUBSCRIPTION)
    deployed.scope.update({k: v for k, v in args.items() if isinstance(v, str)})
    subject = deployed.value(body["filter"].get("subjectBeginsWith", ""))
    function = deployed.value("functionName")
    url = deployed.value(body["destination"]["properties"].get("endpointUrl", ""))
    if len(event_grid) != 1:
        return problems + [f"one Event Grid blob trigger expected, the app declares {event_grid}"]
    name, container = event_grid[0]
    if subject != f"/blobServices/default/containers/{container}/blobs/":
        problems.append(f"{SUBSCRIPTION} filters subjects beginning {subject!r}, but {name} "
                        f"is triggered by blobs in {container!r}")
    if "Microsoft.Storage.BlobCreated" not in body["filter"].get("includedEventTypes", []):
        problems.append(f"{SUBSCRIPTION} does not deliver Microsoft.Storage.BlobCreated")
    if function != name or f"functionName=Host.Functions.{name}&" not in str(url):
        problems.append(f"{SUBSCRIPTION} delivers to {function!r} ({url}), not to {name}")
    if "/runtime/webhooks/blobs?" not in str(url) or "blobs_extension" not in str(
            sub.scope.get("blobsExtensionKey")):
        problems.append(f"{SUBSCRIPTION} does not deliver to the blob extension's webhook with "
                        "the blobs_extension key")
    return problems


def azd_problems(root: Path) -> list[str]:
    """azure.yaml names one Function App service that main.bicep tags and the hook is wired."""
    problems: list[str] = []
    try:
        project = yaml.safe_load((root / "azure.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"azure.yaml does not load: {exc}"]
    services = project.get("services") or {}
    if len(services) != 1:
        return problems + [f"azure.yaml: one service expected, not {sorted(services)}"]
    [(service, config)] = services.items()
    for key, want in (("host", "function"), ("language", "python")):
        if config.get(key) != want:
            problems.append(f"azure.yaml: service {service} has {key} {config.get(key)!r}, "
                            f"azd's Function App deploy needs {want!r}")
    if not (root / str(config.get("project", "")) / "function_app.py").is_file():
        problems.append(f"azure.yaml: service {service}'s project {config.get('project')!r} "
                        "holds no function_app.py")
    infra = project.get("infra") or {}
    module = root / infra.get("path", "infra") / f"{infra.get('module', 'main')}.bicep"
    if infra.get("provider", "bicep") != "bicep" or not module.is_file():
        problems.append(f"azure.yaml: infra {infra} names no Bicep module ({module.name})")
    main = Bicep(root, MAIN)
    tags = main.value(main.modules["functionApp"]["config"]["params"].get("tags"))
    tag = tags.get("azd-service-name") if isinstance(tags, dict) else None
    if tag != service:
        problems.append(f"{MAIN} tags the Function App azd-service-name={tag!r}, but azure.yaml's "
                        f"service is {service!r}")
    if main.doc["globals"].get("scope", {}).get("value") != "subscription":
        problems.append(f"{MAIN} must target the subscription (it creates the resource group)")
    params = main.params
    problems += [f"{MAIN} has no {p} parameter (azd passes it)"
                 for p in ("environmentName", "location", "principalId") if p not in params]
    values = _parameter_values(root)
    for param, variable in (("environmentName", "${AZURE_ENV_NAME}"), ("location", "${AZURE_LOCATION}"),
                            ("principalId", "${AZURE_PRINCIPAL_ID}")):
        if values.get(param) != variable:
            problems.append(f"infra/main.parameters.json gives {param} {values.get(param)!r}, "
                            f"not {variable}")
    problems += [f"infra/main.parameters.json sets {p}, which {MAIN} does not declare"
                 for p in sorted(set(values) - set(params))]
    outputs = set(main.outputs)
    if not (root / HOOK).is_file():
        return problems + [f"{HOOK} is missing"]
    hook = _hook_module(root)
    problems += [f"{HOOK} needs {name}, which {MAIN} does not output"
                 for name in sorted(set(hook.REQUIRED) - outputs)]
    problems += [f"{MAIN} does not output {name}" for name in
                 ("AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME", "SERVICE_API_URI",
                  "AZURE_STORAGE_ACCOUNT_NAME") if name not in outputs]
    post = (project.get("hooks") or {}).get("postdeploy") or {}
    for platform in ("posix", "windows"):
        run = (post.get(platform) or {}).get("run", "")
        if HOOK not in run or post[platform].get("continueOnError"):
            problems.append(f"azure.yaml: postdeploy ({platform}) does not run {HOOK} "
                            "(and stop on its failure)")
    return problems


def _parameter_values(root: Path) -> dict[str, Any]:
    import json
    doc = json.loads((root / "infra" / "main.parameters.json").read_text())
    return {name: p.get("value") for name, p in doc["parameters"].items()}


# -- the deployment package ------------------------------------------------------------------------

PRUNE = {".git", ".venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache",
         ".hypothesis", "__pycache__", ".import_linter_cache"}
# Paths that are not in a clean checkout but are on a developer's machine: the package leaves
# them out whatever else changes.
LOCAL_ONLY = (".venv/lib/python3.11/site-packages/x.py", "parallelrun-functions_env/bin/python",
              "node_modules/azurite/package.json",
              "shared/__pycache__/settings.cpython-311.pyc", "functions/worker.pyc",
              ".azure/dev/.env", ".azure/config.json", "test-artifacts/run1/log.txt",
              "parallelrun_functions.egg-info/PKG-INFO", "__azurite_db_blob__.json",
              "__blobstorage__/abc", "__queuestorage__/q", ".parallelrun/data/x", "local.settings.json",
              ".pytest_cache/v/x", "build/lib/x.py", "dist/x.whl")
# Static files of the web view: they are the app's, so they ship.
PACKAGED_STATIC = ("shared/service/ui/index.html", "shared/service/ui/app.js",
                   "shared/service/ui/style.css")
LEFT_OUT = ("tests/", "bench/", "docs/", "examples/", "infra/", "shared/cli/", "shared/local/")


def repository_files(root: Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in PRUNE]
        found += [Path(folder, f).relative_to(root).as_posix() for f in files]
    return sorted(found)


def packaged(root: Path, paths: Iterable[str]) -> set[str]:
    """The paths ``.funcignore`` (gitignore rules, as azd and Core Tools read it) keeps."""
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    return {p for p in paths if not spec.match_file(p)}


def _imported_local_modules(root: Path, start: str) -> set[str]:
    """Every file of this repository that ``start`` imports, transitively (by its imports)."""
    import ast

    seen: set[str] = set()
    todo = [start]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        tree = ast.parse((root / rel).read_text(), filename=rel)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] not in ("shared", "functions"):
                    continue
                parts = name.split(".")
                for i in range(1, len(parts) + 1):   # each package's __init__ runs too
                    base = root.joinpath(*parts[:i])
                    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                        if candidate.is_file():
                            todo.append(candidate.relative_to(root).as_posix())
    return seen


def package_problems(root: Path) -> list[str]:
    files = repository_files(root)
    keep = packaged(root, [*files, *LOCAL_ONLY, *PACKAGED_STATIC])
    problems: list[str] = []
    needed = {"function_app.py", "host.json", "requirements.txt", *PACKAGED_STATIC}
    needed |= {f for f in files if f.startswith(("functions/", "shared/"))
               and not f.startswith(("shared/cli/", "shared/local/"))}
    needed |= _imported_local_modules(root, "function_app.py")
    problems += [f".funcignore leaves out {p}, which the app needs" for p in sorted(needed - keep)]
    shipped = (keep & set(LOCAL_ONLY)) | {p for p in keep if p.startswith(LEFT_OUT)
                                          or p.endswith((".pyc", ".pyo"))}
    return problems + [f".funcignore ships {p}" for p in sorted(shipped)]
