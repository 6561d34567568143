"""``from azureml_user.parallel_run import EntryScript``, as PRS entry scripts use it."""

from __future__ import annotations

import logging
import os

from shared.scoring.protocol import ENV_LOG_DIR, ENV_NODE_ID, ENV_PROCESS_NAME, ENV_WORK_DIR


class EntryScript:
    """Per-process facts and the script's logger (written to the process's user log)."""

    _logger: logging.Logger | None = None

    @property
    def process_name(self) -> str:
        return os.environ.get(ENV_PROCESS_NAME, "process000")

    @property
    def node_id(self) -> str:
        return os.environ.get(ENV_NODE_ID, "node0")

    @property
    def agent_name(self) -> str:
        return f"{self.node_id}.{self.process_name}"

    @property
    def working_dir(self) -> str:
        return os.environ.get(ENV_WORK_DIR, os.getcwd())

    @property
    def output_dir(self) -> str:
        return os.environ.get("AZUREML_BI_OUTPUT_PATH", os.path.join(os.getcwd(), "output"))

    @property
    def log_dir(self) -> str:
        return os.environ.get(ENV_LOG_DIR, os.path.join(os.getcwd(), "logs"))

    @property
    def logger(self) -> logging.Logger:
        if EntryScript._logger is None:
            logger = logging.getLogger("azureml_user.entry_script")
            path = os.path.join(self.log_dir, "user", f"{self.process_name}.log.txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(logging.Formatter(
                f"%(asctime)s|%(levelname)s|{self.agent_name}|%(message)s"))
            logger.addHandler(handler)
            EntryScript._logger = logger
        return EntryScript._logger
