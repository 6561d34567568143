"""The pure parts of what submit checks: a spec's valid parts salvaged from a refused one, the
compile check of an entry script, the messages (did-you-mean, file listings), and the hint for a
body whose newlines were lost."""

from __future__ import annotations

import pytest

from shared.errors import SpecError
from shared.limits import Limits
from shared.service.api import parse_body
from shared.service.jobs.lifecycle import merged
from shared.service.jobs.references import compile_error, did_you_mean, listing, missing_entry_script
from shared.spec import InputSpec, ModelRef, SpecParts, parse_spec, parse_submission

SHA = "ab" * 32


def base(**fields: object) -> dict[str, object]:
    return {"entry_script": "score.py", "source_directory": f"snapshot:{SHA}",
            "inputs": ["data/images"], **fields}


# -- parts of a refused spec -----------------------------------------------------------------------
def test_a_valid_spec_has_all_its_parts() -> None:
    parsed = parse_submission(base(models=["a", "b:2"], output="out/x", side_inputs=[
        {"name": "lk", "model": "c:3"}, {"name": "files", "path": "side/set/"}]))
    assert parsed.spec is not None and parsed.errors == []
    parts = parsed.parts
    assert parts == SpecParts.of(parsed.spec)
    assert parts.models == (ModelRef("models.0", "a", None), ModelRef("models.1", "b", 2),
                            ModelRef("side_inputs.0.model", "c", 3))
    assert [(f, i.container, i.prefix) for f, i in parts.inputs] == [("inputs.0", "data", "images/")]
    assert [(f, i.container) for f, i in parts.side_inputs] == [("side_inputs.1", "side")]
    assert parts.output is not None and parts.output.container == "out"


def test_a_refused_spec_keeps_the_parts_that_are_valid_by_themselves() -> None:
    parsed = parse_submission(base(
        name="Bad_Name", run_max_try=0, models=["ok", "not a model", "ok2:3"],
        inputs=["data/a/", {"container": "Bad"}, {"container": "data", "glob": "*.csv"}],
        output="out/../x"))
    assert parsed.spec is None
    assert {e["field"] for e in parsed.errors} == {"name", "run_max_try", "models", "inputs.1.container",
                                                   "output.path"}
    parts = parsed.parts
    assert parts.entry_script == "score.py" and parts.source_directory == f"snapshot:{SHA}"
    assert parts.models == (ModelRef("models.0", "ok", None), ModelRef("models.2", "ok2", 3))
    assert [f for f, _ in parts.inputs] == ["inputs.0", "inputs.2"]
    assert parts.inputs[1][1] == InputSpec(name="input_2", container="data", glob="*.csv")
    assert parts.output is None


def test_a_spec_that_fails_on_every_reference_has_no_parts() -> None:
    parsed = parse_submission({"entry_script": "../x.py", "source_directory": "snapshot:zz",
                               "inputs": "data", "models": "m", "environment": 3})
    assert parsed.spec is None
    assert parsed.parts == SpecParts()


def test_a_v2_job_names_its_v2_fields_in_the_parts() -> None:
    parsed = parse_submission({"type": "parallel", "inputs": {"data": {
        "type": "uri_folder", "path": "azureml://datastores/data/paths/in/"}},
        "input_data": "${{inputs.data}}", "max_concurrency_per_instance": 0,
        "task": {"type": "run_function", "code": f"snapshot:{SHA}", "entry_script": "score.py"}})
    assert parsed.spec is None
    assert [e["field"] for e in parsed.errors] == ["max_concurrency_per_instance"]
    assert parsed.parts.rename("process_count_per_node") == "max_concurrency_per_instance"
    assert [i.container for _, i in parsed.parts.inputs] == ["data"]


def test_what_is_over_a_limit_still_raises() -> None:
    with pytest.raises(SpecError) as info:
        parse_submission(base(description="d" * 100), Limits(max_string_chars=80))
    assert [e["field"] for e in info.value.errors] == ["description"]


def test_parse_spec_still_raises_every_schema_error() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(base(name="Bad_Name", run_max_try=0))
    assert {e["field"] for e in info.value.errors} == {"name", "run_max_try"}


def test_errors_are_merged_one_entry_per_field_in_order() -> None:
    assert merged([{"field": "a", "message": "x"}, {"field": "b", "message": "y"},
                   {"field": "a", "message": "z"}, {"field": "a", "message": "x"}]) == [
        {"field": "a", "message": "x; z"}, {"field": "b", "message": "y"}]


# -- the entry script ------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "words"), [
    (b"def run(b):\n    return b\n", None),
    (b"# -*- coding: latin-1 -*-\nNAME = '\xe9'\n", None),          # the source's own encoding
    (b"x = (\n", "score.py does not compile: line 1: '(' was never closed: 'x = ('"),
    (b"def f():\n  x = 1\n    y = 2\n", "line 3: unexpected indent"),
    (b"def f():\n    nonlocal q\n", "line 2: no binding for nonlocal 'q' found"),
    (b"x = 1\x00\n", "score.py does not compile: "),
    (b"x = " + b"(" * 5000 + b")" * 5000 + b"\n", "score.py does not compile: "),
    (b"x = " + b"-" * 200_000 + b"1\n", "score.py does not compile: "),
], ids=["fine", "latin-1", "unclosed", "indent", "symtable", "null-byte", "nested-parens", "deep-unary"])
def test_an_entry_script_is_compiled_never_run(source: bytes, words: str | None) -> None:
    problem = compile_error(source + b"raise SystemExit('ran')\n" if words is None else source, "score.py")
    if words is None:
        assert problem is None
    else:
        assert problem is not None and words in problem
        assert len(problem) < 500


def test_messages_list_a_bounded_number_of_files_and_suggest_the_closest() -> None:
    assert listing([]) == "no files"
    assert listing([f"f{i}" for i in range(3)]) == "f0, f1, f2"
    assert listing([f"f{i:02d}" for i in range(12)], 10).endswith("f09 (and 2 more)")
    assert did_you_mean("ehco", ["echo", "mnist"]) == " (did you mean 'echo'?)"
    assert did_you_mean("zzz", ["echo", "mnist"]) == ""
    message = missing_entry_script("scroe.py", "/tmp/code", ["util.py", "score.py", "data.csv"])
    assert message == ("scroe.py is not in source_directory /tmp/code (did you mean 'score.py'?); "
                       "it holds 3 file(s): data.csv, score.py, util.py")


# -- bodies ----------------------------------------------------------------------------------------
YAML = b"name: ok\nentry_script: score.py\ninputs:\n  - data/x/\n"


def test_a_body_is_json_or_yaml_whatever_it_came_with() -> None:
    assert parse_body(YAML, Limits()) == {"name": "ok", "entry_script": "score.py", "inputs": ["data/x/"]}
    assert parse_body(b'{"name": "ok", "entry_script": "s.py"}', Limits())["name"] == "ok"
    assert parse_body(b"entry_script: s.py", Limits()) == {"entry_script": "s.py"}   # one line is fine


@pytest.mark.parametrize("body", [YAML.replace(b"\n", b""), YAML.replace(b"\n", b"").replace(b"  - ", b" ")])
def test_yaml_that_lost_its_newlines_gets_a_hint(body: bytes) -> None:
    with pytest.raises(SpecError) as info:
        parse_body(body, Limits())
    (error,) = info.value.errors
    assert error["field"] == "(body)" and "--data-binary" in error["message"]


def test_json_on_one_line_that_is_broken_gets_no_curl_hint() -> None:
    with pytest.raises(SpecError) as info:
        parse_body(b'{"name": "ok", "entry_script": "s.py"', Limits())
    assert "--data-binary" not in info.value.errors[0]["message"]
