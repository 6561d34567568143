"""A job's environment builds as its status shows them: one row per node in the job's partition
(RowKey ``v-<node>``), written by the worker that builds or reuses the environment on that node.

A row is replaced whole (an upsert), so writing it twice, or late, leaves the last report; a worker
that dies mid-build leaves a ``building`` row whose ``updated_at`` stops moving, which the status
shows as stalled (the mini-batch's next delivery builds again, on this node or another). The rows
never decide anything: they are what the user reads while the first mini-batch waits.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from azure.data.tables import TableClient, UpdateMode

ROW_PREFIX = "v-"
LINE_CHARS = 300          # of the installer's last line kept in the row
STALL_S = 60.0            # a build row not updated for this long is shown as stalled


class BuildState(StrEnum):
    BUILDING = "building"    # installing (or waiting for this node's other build of it)
    BUILT = "built"          # installed now, by this job
    REUSED = "reused"        # the node had it (built by an earlier job, or pre-built)
    FAILED = "failed"        # the installer failed: the job stops


@dataclass(frozen=True)
class EnvironmentRow:
    job_id: str
    node: str
    state: BuildState
    key: str
    started_at: float
    updated_at: float
    elapsed_s: float
    last_line: str

    def to_entity(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("job_id")
        return {"PartitionKey": self.job_id, "RowKey": f"{ROW_PREFIX}{self.node}", **data,
                "state": str(self.state), "last_line": self.last_line[:LINE_CHARS]}

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> EnvironmentRow:
        return cls(job_id=e["PartitionKey"], node=str(e.get("node", e["RowKey"][len(ROW_PREFIX):])),
                   state=BuildState(e.get("state", BuildState.BUILDING)), key=str(e.get("key", "")),
                   started_at=float(e.get("started_at", 0.0)), updated_at=float(e.get("updated_at", 0.0)),
                   elapsed_s=float(e.get("elapsed_s", 0.0)), last_line=str(e.get("last_line", "")))

    def shown(self, job_terminal: bool, now: float | None = None) -> dict[str, Any]:
        """As the status shows it: a build that stopped reporting says so."""
        now = time.time() if now is None else now
        data = asdict(self)
        data.pop("job_id")
        data["state"] = str(self.state)
        if self.state == BuildState.BUILDING:
            data["elapsed_s"] = round(max(self.elapsed_s, (self.updated_at if job_terminal else now)
                                          - self.started_at), 1)
            if job_terminal:
                data["state"] = "interrupted"
            elif now - self.updated_at > STALL_S:
                data["state"] = "stalled"
                data["last_line"] = (f"no report for {now - self.updated_at:.0f} s (its worker may have "
                                     f"stopped; the mini-batch is retried); last: {self.last_line}")
        return data


def put(table: TableClient, row: EnvironmentRow) -> None:
    table.upsert_entity(row.to_entity(), mode=UpdateMode.REPLACE)


def rows(table: TableClient, job_id: str) -> list[EnvironmentRow]:
    query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
    found = table.query_entities(query, parameters={"pk": job_id, "lo": ROW_PREFIX, "hi": "v."})
    return sorted((EnvironmentRow.from_entity(e) for e in found), key=lambda r: r.node)
