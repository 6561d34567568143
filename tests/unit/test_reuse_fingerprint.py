"""What is in a job's fingerprint and how a difference is said (pure; the decision end to end is
tests/integration/test_reuse.py)."""

from __future__ import annotations

from typing import Any

from shared.service.jobs import reuse
from shared.service.ledger.rows import JobRow, spec_json
from shared.spec import JobSpec, parse_spec

BASE = {"name": "score", "entry_script": "s.py", "source_directory": "snapshot:" + "a" * 64,
        "inputs": ["data/x/"], "arguments": ["--threshold", "0.5"], "mini_batch_size": "5"}


def job(fingerprint: dict[str, Any] | None = None, **fields: Any) -> JobRow:
    spec = parse_spec({**BASE, **fields})
    fp = {"code": spec.source_directory, "models": {}, "environment": [], "side_inputs": {},
          "params": reuse._digest(reuse.params(spec)), **(fingerprint or {})}
    return JobRow(job_id="j", spec_json=spec_json(spec), fingerprint=fp)


def test_fields_that_cannot_change_results_are_not_in_the_fingerprint() -> None:
    a = reuse.params(parse_spec(BASE))
    b = reuse.params(parse_spec({**BASE, "name": "other", "node_count": 4, "process_count_per_node": 8,
                                 "logging_level": "DEBUG", "run_invocation_timeout": 600,
                                 "allow_reuse": False, "description": "x", "output": "out/y"}))
    assert a == b
    assert set(JobSpec.model_fields) - set(a) == reuse.NOT_FINGERPRINTED


def test_an_omitted_field_and_its_default_written_out_are_the_same() -> None:
    assert reuse.params(parse_spec(BASE)) == reuse.params(parse_spec({**BASE, "run_max_try": 3,
                                                                      "error_threshold": -1}))


def test_each_difference_is_said_old_to_new() -> None:
    old = job({"models": {"mnist": "1:abc"}, "environment": []})
    new = job({"models": {"mnist": "2:abc"}, "environment": ["scikit-learn==1.9.1"]},
              arguments=["--threshold", "0.7"], error_threshold=3)
    assert reuse.differences(old, new) == [
        "model mnist: version 1 → 2",
        "environment differs ([] → scikit-learn==1.9.1)",
        "arguments differ (--threshold 0.5 → --threshold 0.7)",
        "error_threshold differs (-1 → 3)",
    ]
    same_version = job({"models": {"mnist": "1:def"}})
    assert reuse.differences(job({"models": {"mnist": "1:abc"}}), same_version) == [
        "model mnist: its content changed"]
    assert reuse.differences(old, old) == []


def test_a_listing_diff_counts_and_names_examples() -> None:
    diff = reuse.Diff(added=1, changed=2, removed=0, examples=["c/a.png", "c/b.png"])
    assert diff.describe("job-1") == ("3 input blobs changed since job job-1 "
                                      "(1 added, 2 rewritten; e.g. c/a.png, c/b.png)")
    assert reuse.Diff().same and not diff.same
