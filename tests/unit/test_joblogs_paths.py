"""A log path a request names stays inside the job's logs/ folder; files are classified by kind."""

from __future__ import annotations

import pytest

from shared.errors import SubmitterError
from shared.service.jobs.joblogs import check_path, classify


@pytest.mark.parametrize("path", ["job_result.txt", "user/stdout/node-0/worker-1.txt",
                                  "sys/environment/node-0.txt", "processed_mini-batches.csv",
                                  "user/error/n/p.txt", "a..b/c.txt"])
def test_a_path_inside_logs_is_accepted(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize("path", ["..", "../job_result.txt", "user/../../x", "user/./stdout",
                                  "/etc/passwd", "user//stdout", "user\\stdout\\n.txt",
                                  "C:/windows", "a\x00b", "line\nbreak", "", "x/" * 600, "user/"])
def test_a_path_that_could_leave_logs_is_refused_naming_it(path: str) -> None:
    with pytest.raises(SubmitterError) as refused:
        check_path(path)
    assert "log path" in str(refused.value)
    assert repr(path[:120]) in str(refused.value)


@pytest.mark.parametrize("path,expected", [
    ("job_result.txt", ("job", "", "")),
    ("processed_mini-batches.csv", ("job", "", "")),
    ("user/stdout/node-0/worker-1.txt", ("stdout", "node-0", "worker-1")),
    ("user/stderr/node-1/worker-0.txt", ("stderr", "node-1", "worker-0")),
    ("user/entry_script_log/node-0/worker-0.txt", ("entry", "node-0", "worker-0")),
    ("user/error/node-0/worker-2.txt", ("error", "node-0", "worker-2")),
    ("sys/environment/node-0.txt", ("sys", "node-0", "")),
])
def test_files_are_classified_by_kind_node_and_process(path: str, expected: tuple[str, str, str]) -> None:
    assert classify(path) == expected
