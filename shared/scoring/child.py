"""The scoring process: runs the user's entry script with PRS's contract.

Started by :mod:`shared.service.working.pool` as ``python -m shared.scoring CMD_FD RESULT_FD``. It receives a
:class:`ScoringConfig`, prepares the environment PRS scripts expect (``sys.argv``, environment
variables, the ``azureml`` compatibility layer, ``AZUREML_MODEL_DIR``, ``AZUREML_BI_OUTPUT_PATH``),
imports the entry script, calls ``init()`` once, then answers ``run`` requests until told to stop,
calling ``shutdown()`` if the script defines one. The script's stdout/stderr go to log files; the
channel to the parent is a pair of private pipes carrying :mod:`shared.scoring.protocol` frames (data only),
so nothing the script prints can corrupt it, and nothing it writes there can run in the worker.

The process is the subreaper of what its script starts (:mod:`shared.scoring.reaper`) and ends itself and
all of it when the worker that started it is gone.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from shared.scoring import protocol, reaper
from shared.scoring.protocol import ScoringConfig

COMPAT_DIR = Path(__file__).resolve().parent / "compat"
# What a warm spare imports before it is given a job (shared.service.working.pool): the libraries of the design card
# and the table reader. A script's own environment variables (config.environment) must be set before
# these load (numpy reads OMP_NUM_THREADS on import), so jobs that set any get fresh processes.
WARM_IMPORTS = ("numpy", "pandas", "pyarrow", "pyarrow.csv", "pyarrow.parquet", "pyarrow.json",
                "onnxruntime", "PIL.Image", "PIL.PngImagePlugin", "shared.scoring.tables", "shared.scoring.textrows")


@dataclass
class MiniBatchContext:
    """What ``run(mini_batch, mini_batch_context)`` receives, as in PRS."""

    minibatch_index: int
    dataset: str = ""
    partition_key_value: dict[str, Any] | None = None


def describe(exc: BaseException) -> str:
    """An exception as the try's error; a module that cannot be imported gets a hint: scoring
    processes import the app's requirements.txt and the job's ``environment``, nothing else."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ModuleNotFoundError) and exc.name and not exc.name.startswith("shared."):
        text += (f" (scoring processes import the app's packages and the job's environment only: "
                 f"add the package that provides {exc.name.split('.')[0]!r} to the job's "
                 "environment, see docs/environments.md)")
    elif "binary incompatibility" in str(exc) or "compiled using NumPy 1.x" in str(exc):
        numpy = sys.modules.get("numpy")
        text += (f" (a package was built against another numpy than the "
                 f"{getattr(numpy, '__version__', 'one')} it runs "
                 "with: pin the numpy it needs in the job's environment, e.g. numpy==1.26.4 beside "
                 "pandas 1.x, see docs/environments.md)")
    return text


def format_rows(result: Any, output_format: str = "text") -> tuple[str | bytes, int, str]:
    """Rows of a ``run()`` result and their count, plus a header line (csv only).

    ``text`` is PRS's append_row format: list -> ``str(x)`` per line; DataFrame -> space-separated
    rows without header or index. ``csv``: comma-separated rows (the header line goes once at the top
    of the output). ``jsonl``: one JSON object per DataFrame row, or one JSON value per list element.
    """
    import pandas as pd  # only scoring processes need pandas loaded

    if output_format == "parquet":   # one part file per mini-batch; a list becomes column "result"
        frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame(
            {"result": [str(x) for x in _as_list(result)]})
        return frame.to_parquet(index=False), len(frame), ""
    if isinstance(result, pd.DataFrame):
        if output_format in ("csv", "text"):
            from shared.scoring.textrows import numeric_frame_text

            sep = "," if output_format == "csv" else " "
            header = result.head(0).to_csv(index=False) if output_format == "csv" else ""
            fast = numeric_frame_text(result, sep)
            rows = fast if fast is not None else result.to_csv(sep=sep, header=False, index=False)
            return rows, len(result), header
        if output_format == "jsonl":
            text = result.to_json(orient="records", lines=True, date_format="iso")
            return (text if text.endswith("\n") or not text else text + "\n"), len(result), ""
    if isinstance(result, (list, tuple)):
        if output_format == "jsonl":
            return "".join(json.dumps(x, default=str) + "\n" for x in result), len(result), ""
        return "".join(f"{x}\n" for x in result), len(result), ""
    raise TypeError(f"run() must return a list or a pandas DataFrame, got {type(result).__name__}")


def _as_list(result: Any) -> list[Any]:
    if isinstance(result, (list, tuple)):
        return list(result)
    raise TypeError(f"run() must return a list or a pandas DataFrame, got {type(result).__name__}")


def _prepare(config: ScoringConfig) -> None:
    for d in (config.work_dir, config.output_dir, config.log_dir):
        os.makedirs(d, exist_ok=True)
    user_logs = Path(config.log_dir) / "user"
    user_logs.mkdir(parents=True, exist_ok=True)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(user_logs / f"{config.process_name}.{name}.txt",
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if config.models_root and not os.path.lexists(local := os.path.join(config.work_dir, "azureml-models")):
        # Azure ML's models folder is also ./azureml-models beside the script's working folder
        os.symlink(config.models_root, local, target_is_directory=True)
    os.environ["HOME"] = config.work_dir
    _hold_snapshot(config.source_dir)
    _sandbox(config)
    os.environ.update(config.environment)
    os.environ.update({
        "AZUREML_MODEL_DIR": config.model_dir,
        "AZUREML_BI_OUTPUT_PATH": config.output_dir,
        protocol.ENV_JOB_ID: config.job_id,
        protocol.ENV_NODE_ID: config.node_id,
        protocol.ENV_PROCESS_NAME: config.process_name,
        protocol.ENV_LOG_DIR: config.log_dir,
        protocol.ENV_WORK_DIR: config.work_dir,
        protocol.ENV_MODEL_PINS: ",".join(f"{k}:{v}" for k, v in config.model_pins.items()),
        protocol.ENV_MODEL_PATHS: json.dumps(config.model_paths),
    })
    import tempfile
    tempfile.tempdir = None      # a spare may have looked it up before TMPDIR was its own
    logging.basicConfig(level=config.logging_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path[:0] = [str(COMPAT_DIR), config.source_dir]
    sys.argv = [config.entry_script, *bound_arguments(config)]
    os.chdir(config.work_dir)


_BINDING = re.compile(r"\$\{\{\s*((?:inputs|outputs)\.[A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def bound_arguments(config: ScoringConfig) -> list[str]:
    """The arguments with each ``${{inputs.NAME}}`` / ``${{outputs.NAME}}`` replaced by what it
    stands for on this node: a model input by its path (as ``Model.get_model_path`` gives it), a
    side input by its folder (or its one file), an output by the output folder (the spec was
    checked at submission: every one is bound)."""
    def path(match: re.Match[str]) -> str:
        kind, _, name = config.bindings[match.group(1)].partition(":")
        if kind == "output":
            return config.output_dir
        return (config.side_input_paths if kind == "side" else config.model_paths)[name]
    return [_BINDING.sub(path, arg) for arg in config.arguments]


_held: list[int] = []


def _hold_snapshot(source_dir: str) -> None:
    """Hold a shared lock on the extracted snapshot for this process's life (never evicted)."""
    from shared.scoring.holds import hold

    fd = hold(Path(source_dir))
    if fd is not None:
        _held.append(fd)


def _sandbox(config: ScoringConfig) -> None:
    """From here on the process writes only beneath its work dir (see shared.scoring.sandbox)."""
    from shared.scoring.sandbox import restrict_writes

    tmp = os.path.join(config.work_dir, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ.update({"TMPDIR": tmp, "TEMP": tmp, "TMP": tmp})
    tempfile.tempdir = tmp
    if not config.sandbox:
        return
    abi = restrict_writes([config.work_dir, "/dev", *config.sandbox_writable])
    if not abi:
        logging.getLogger("parallelrun.sandbox").warning(
            "Landlock is not available: only read-only files protect the code and models")


def _load(config: ScoringConfig) -> ModuleType:
    name = Path(config.entry_script).stem
    spec = importlib.util.spec_from_file_location(name, config.entry_script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load entry script {config.entry_script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for required in ("init", "run"):
        if not callable(getattr(module, required, None)):
            raise AttributeError(f"entry script {Path(config.entry_script).name} defines no {required}()")
    return module


def _wants_context(run: Any) -> bool:
    params = [p for p in inspect.signature(run).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(params) >= 2


def _serve(requests: protocol.Reader, out: int, script: ModuleType, config: ScoringConfig) -> None:
    run = script.run
    with_context = _wants_context(run)
    loader = None
    while True:
        request = requests.read()
        if isinstance(request, protocol.Shutdown):
            shutdown = getattr(script, "shutdown", None)
            if callable(shutdown):
                shutdown()
            protocol.write(out, protocol.Bye())
            return
        if not isinstance(request, protocol.RunRequest):
            raise protocol.ProtocolError(f"unexpected {type(request).__name__}")
        seq, payload = request.seq, request.payload
        protocol.write(out, protocol.Begin(seq))
        started = time.perf_counter()
        try:
            if isinstance(payload, dict):          # a table: read it here, report its size first
                if loader is None:
                    from shared.scoring.tables import TableLoader
                    loader = TableLoader()
                batch: Any = loader.load(payload)
                protocol.write(out, protocol.Loaded(seq, len(batch)))
                started = time.perf_counter()
            else:
                batch = list(payload)
            context = MiniBatchContext(**request.context)
            result = run(batch, context) if with_context else run(batch)
            text, n, header = format_rows(result, config.output_format)
            body = text.encode("utf-8") if isinstance(text, str) else text
            if len(body) > config.max_result_bytes:
                raise ValueError(f"run() returned {len(body)} bytes of rows, more than the limit "
                                 f"of {config.max_result_bytes} (PARALLELRUN_MAX_RESULT_BYTES)")
            answer: protocol.Message = protocol.Result(seq, n, time.perf_counter() - started,
                                                       header, body)
        except BaseException as exc:  # noqa: BLE001 - SystemExit, MemoryError... all fail one try
            answer = protocol.RunFailed(seq, protocol.cut(describe(exc), 8192),
                                        protocol.cut(traceback.format_exc()),
                                        time.perf_counter() - started)
            if isinstance(exc, KeyboardInterrupt):
                raise
        protocol.write(out, answer)


def _watch_parent(parent: int, interval_s: float = 0.5) -> None:
    """End this process and everything it started once the worker that started it is gone (a
    SIGKILLed node must leave no scoring process behind)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        _end_all()
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _end_all() -> None:
    """SIGKILL everything this process's script started, then this process's group (itself)."""
    me = os.getpid()
    for _ in range(reaper.ROUNDS):
        found = reaper.descendants(me)
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _warm_imports() -> None:
    """A spare's head start: import what most scripts and the table reader use."""
    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing or broken library is the script's business
            pass


def _warm_quietly() -> bool:
    """:func:`_warm_imports` under ``SCHED_IDLE``, so a spare never slows a running job; True once
    back at normal priority (False if the system does not allow that: the spare must not be used)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        idle = True
    except (AttributeError, OSError):       # not Linux: import at normal priority
        idle = False
    _warm_imports()
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            return False
    return True


def main(argv: list[str]) -> int:
    _watch_parent(int(os.environ.get(protocol.ENV_PARENT_PID) or os.getppid()))
    reaper.become_subreaper()
    requests = protocol.Reader(int(argv[0]), protocol.Limits(
        max_control_bytes=protocol.MAX_REQUEST_BYTES, max_body_bytes=0))
    out = int(argv[1])
    if "--warm" in argv[2:]:
        protocol.write(out, protocol.Warm(_warm_quietly()))
    try:
        assign = requests.read()
    except protocol.ChannelClosed:   # a spare the pool let go of (or whose worker is gone)
        return 0
    if not isinstance(assign, protocol.Assign):
        return 2
    config = assign.config
    try:
        _prepare(config)
        script = _load(config)
        script.init()
    except BaseException as exc:  # noqa: BLE001 - report init() failures of any kind
        protocol.write(out, protocol.InitFailed(protocol.cut(describe(exc), 8192),
                                                protocol.cut(traceback.format_exc())))
        return 1
    protocol.write(out, protocol.Ready(os.getpid()))
    try:
        _serve(requests, out, script, config)
    except protocol.ChannelClosed:   # the worker is gone: leave nothing of the script behind
        _end_all()
    return 0

