"""The job spec: PRS's defaults and rules, one error per bad field, refusals, path safety, overrides."""

from __future__ import annotations

import json
import math
import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.errors import SpecError, SubmitterError
from shared.spec import NOT_SUPPORTED_YET, InputSpec, JobSpec, OutputSpec, parse_mini_batch_size, parse_spec

SHA = "ab" * 32


def base(**fields: object) -> dict[str, object]:
    """The smallest valid spec, with ``fields`` replaced."""
    return {"entry_script": "score.py", "inputs": ["data/images"], **fields}


def errors_of(data: object) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)  # type: ignore[arg-type]
    fields = [e["field"] for e in info.value.errors]
    assert len(fields) == len(set(fields)), "one entry per field"
    return {e["field"]: e["message"] for e in info.value.errors}


def assert_only_error(data: object, field: str, *words: str) -> str:
    errors = errors_of(data)
    assert list(errors) == [field], errors
    for word in words:
        assert word in errors[field], errors[field]
    return errors[field]


# ---- defaults ---------------------------------------------------------------------------------------

def test_defaults_match_prs() -> None:
    spec = parse_spec(base())
    assert spec.mini_batch_size == "10" and spec.file_batch_size == 10
    assert spec.error_threshold == -1
    assert spec.allowed_failed_count is None and spec.allowed_failed_percent is None
    assert spec.output_action == "append_row"
    assert spec.append_row_file_name == "parallel_run_step.txt"
    assert spec.node_count == 1 and spec.process_count_per_node is None
    assert spec.logging_level == "INFO"
    assert spec.run_invocation_timeout == 60 and spec.run_max_try == 3
    assert spec.arguments == [] and spec.models == [] and spec.environment_variables is None
    assert spec.output is None and spec.name is None and spec.source_directory is None
    assert spec.partition_keys is None and spec.side_inputs is None and spec.allow_reuse is True
    assert spec.input_type == "file"


def test_spec_error_is_a_submitter_error() -> None:
    with pytest.raises(SubmitterError):
        parse_spec({})


def test_entry_script_and_inputs_are_required() -> None:
    errors = errors_of({})
    assert errors == {"entry_script": "required", "inputs": "required"}
    assert errors_of(base(inputs=[])) == {"inputs": "must not be empty"}


# ---- mini_batch_size --------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "kind", "expected"), [
    ("10", "file", 10), (7, "file", 7), (" 3 ", "file", 3), (None, "file", 10),
    ("1024", "tabular", 1024), (2048, "tabular", 2048), ("1024KB", "tabular", 1024 * 1024),
    ("400Kb", "tabular", 400 * 1024), ("10MB", "tabular", 10 * 1024 ** 2), ("10mb", "tabular", 10 * 1024 ** 2),
    ("1GB", "tabular", 1024 ** 3), ("1gB", "tabular", 1024 ** 3), (None, "tabular", 1024 * 1024),
])
def test_parse_mini_batch_size(value: str | int | None, kind: str, expected: int) -> None:
    assert parse_mini_batch_size(value, kind) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "kind"), [
    ("abc", "file"), ("abc", "tabular"), ("0", "file"), (0, "tabular"), (-1, "file"), ("-5", "tabular"),
    ("1.5", "file"), ("10 MB", "tabular"), ("1TB", "tabular"), ("10B", "tabular"), ("1KBKB", "tabular"),
    ("10MB", "file"), ("1KB", "file"), (True, "file"), (1.0, "file"), ([10], "tabular"), ("", "file"),
])
def test_parse_mini_batch_size_rejects(value: object, kind: str) -> None:
    with pytest.raises(ValueError):
        parse_mini_batch_size(value, kind)  # type: ignore[arg-type]


@given(st.integers(1, 10 ** 9), st.sampled_from([("", 1), ("kb", 1024), ("MB", 1024 ** 2), ("Gb", 1024 ** 3)]))
def test_tabular_sizes_scale_by_unit(number: int, unit: tuple[str, int]) -> None:
    assert parse_mini_batch_size(f"{number}{unit[0]}", "tabular") == number * unit[1]


def test_mini_batch_size_for_files_is_a_count() -> None:
    assert parse_spec(base(mini_batch_size=25)).file_batch_size == 25
    assert parse_spec(base(mini_batch_size="4")).file_batch_size == 4
    assert_only_error(base(mini_batch_size="10MB"), "mini_batch_size", "number of files")
    assert_only_error(base(mini_batch_size="abc"), "mini_batch_size", "abc")
    assert_only_error(base(mini_batch_size=0), "mini_batch_size")


# ---- the three-field example, and collecting every problem ---------------------------------------------

def test_three_bad_fields_give_exactly_three_errors() -> None:
    errors = errors_of(base(mini_batch_size="abc", name="Bad_Name", run_max_try=0))
    assert set(errors) == {"mini_batch_size", "name", "run_max_try"}
    assert "Bad_Name" in errors["name"]
    assert "1" in errors["run_max_try"]


def test_every_problem_is_reported_at_once() -> None:
    errors = errors_of({
        "entry_script": "../up.py", "inputs": [{"container": "Bad"}, "data/../etc"], "output": "x",
        "error_threshold": -2, "allowed_failed_percent": 150, "output_action": "everything",
        "append_row_file_name": "a/b.txt", "node_count": 0, "logging_level": "LOUD", "models": ["m:0"],
        "environment_variables": {"1X": "y"}, "arguments": ["--output", "o"], "partition_keys": [],
        "colour": "blue"})
    assert set(errors) == {
        "entry_script", "inputs.0.container", "inputs.1.path", "output.container", "error_threshold",
        "allowed_failed_percent", "output_action", "append_row_file_name", "node_count", "logging_level",
        "models", "environment_variables", "arguments", "partition_keys", "colour"}


def test_unknown_fields_are_named_with_a_suggestion() -> None:
    message = assert_only_error(base(mini_batchsize=5), "mini_batchsize", "unknown field")
    assert "mini_batch_size" in message
    assert_only_error(base(inputs=[{"containr": "data"}]), "inputs.0.containr", "unknown", "container")
    assert_only_error(base(output={"container": "out", "folder": "x"}), "output.folder", "unknown field")


# ---- name, entry_script, source_directory -----------------------------------------------------------

@pytest.mark.parametrize("name", ["predict-digits-mnist", "abc", "a1-b2", "a" * 32, "x-9"])
def test_valid_names(name: str) -> None:
    assert parse_spec(base(name=name)).name == name


@pytest.mark.parametrize("name", ["Bad_Name", "ab", "a" * 33, "1abc", "abc-", "-abc", "a_b", "ABC", "a b c", ""])
def test_invalid_names(name: str) -> None:
    assert_only_error(base(name=name), "name", "PRS")


@pytest.mark.parametrize(("given_", "normal"), [
    ("score.py", "score.py"), ("src/score.py", "src/score.py"), ("./score.py", "score.py"),
    (" src//batch/score.py ", "src/batch/score.py"),
])
def test_valid_entry_scripts(given_: str, normal: str) -> None:
    assert parse_spec(base(entry_script=given_)).entry_script == normal


@pytest.mark.parametrize("script", ["/abs/score.py", "../score.py", "a/../../b.py", "a/..", "C:/x.py",
                                    "a\\b.py", "score.txt", "", "  "])
def test_entry_script_may_not_escape_or_be_odd(script: str) -> None:
    assert_only_error(base(entry_script=script), "entry_script")


def test_source_directory_is_a_local_folder_or_a_snapshot() -> None:
    assert parse_spec(base(source_directory="./src")).source_directory == "./src"
    assert parse_spec(base(source_directory="./src")).snapshot_sha256 is None
    spec = parse_spec(base(source_directory="snapshot:" + SHA.upper()))
    assert spec.source_directory == "snapshot:" + SHA and spec.snapshot_sha256 == SHA
    for bad in ("snapshot:abc", "snapshot:" + "g" * 64, "snapshot:" + SHA + "0", ""):
        assert_only_error(base(source_directory=bad), "source_directory")


# ---- budgets, timeouts, counts ----------------------------------------------------------------------

@pytest.mark.parametrize("field", ["error_threshold", "allowed_failed_count"])
def test_failure_counts_are_minus_one_or_more(field: str) -> None:
    for good in (-1, 0, 10, 2 ** 31 - 1):
        assert getattr(parse_spec(base(**{field: good})), field) == good
    for bad in (-2, "many", 1.5, True, False):
        assert_only_error(base(**{field: bad}), field)


def test_allowed_failed_percent_is_0_to_100_or_minus_one() -> None:
    for good in (-1, 0, 12.5, 100):
        assert parse_spec(base(allowed_failed_percent=good)).allowed_failed_percent == good
    for bad in (-0.5, 100.1, 150, math.nan, math.inf, "half", True):
        assert_only_error(base(allowed_failed_percent=bad), "allowed_failed_percent")


@pytest.mark.parametrize(("field", "good", "bad"), [
    ("node_count", [1, 8, "2"], [0, -1, "x", True]),
    ("process_count_per_node", [1, 16, None], [0, -3, True]),
    ("run_invocation_timeout", [1, 600], [0, -60, 1.5, True]),
    ("run_max_try", [1, 3, 10], [0, -1, True]),
])
def test_positive_integers(field: str, good: list[object], bad: list[object]) -> None:
    for value in good:
        assert getattr(parse_spec(base(**{field: value})), field) == (int(value) if value else value)
    for value in bad:
        assert_only_error(base(**{field: value}), field)


# ---- output_action, append_row_file_name, logging_level ----------------------------------------------

def test_output_action() -> None:
    assert parse_spec(base(output_action="summary_only")).output_action == "summary_only"
    assert parse_spec(base(output_action="Append_Row")).output_action == "append_row"
    assert_only_error(base(output_action="file"), "output_action", "append_row", "summary_only")


@pytest.mark.parametrize("name", ["results.csv", "my output.txt", "scores_v2.jsonl", "x"])
def test_valid_append_row_file_names(name: str) -> None:
    assert parse_spec(base(append_row_file_name=name)).append_row_file_name == name


@pytest.mark.parametrize("name", ["a/b.txt", "a\\b.txt", "x:y", "a?b", "a*b", "a|b", "a#b", "~x", "a<b", "%x",
                                  "{x}", 'a"b', "", " ", ".", "..", "x" * 256, "tab\there"])
def test_invalid_append_row_file_names(name: str) -> None:
    assert_only_error(base(append_row_file_name=name), "append_row_file_name")


@pytest.mark.parametrize(("level", "normal"), [
    ("INFO", "INFO"), ("debug", "DEBUG"), ("Warning", "WARNING"), ("warn", "WARNING"), ("error", "ERROR"),
    ("critical", "CRITICAL"), ("fatal", "CRITICAL"), ("notset", "NOTSET"),
])
def test_logging_levels_are_python_names(level: str, normal: str) -> None:
    assert parse_spec(base(logging_level=level)).logging_level == normal


@pytest.mark.parametrize("level", ["verbose", "", 10, "INFO2"])
def test_invalid_logging_levels(level: object) -> None:
    assert_only_error(base(logging_level=level), "logging_level")


# ---- arguments, environment variables, models ---------------------------------------------------------

def test_arguments_become_strings() -> None:
    spec = parse_spec(base(arguments=["--model_name", "m", "--threshold", 0.5, "--k", 3, "--flag", True]))
    assert spec.arguments == ["--model_name", "m", "--threshold", "0.5", "--k", "3", "--flag", "True"]
    assert parse_spec(base(arguments=None)).arguments == []
    assert parse_spec(base(arguments=["-v", "--my_output", "x", "--output_dir=y"])).arguments[0] == "-v"


@pytest.mark.parametrize("argument", ["--mini_batch_size", "--output", "--output=x", "--scoring_module_name",
                                      "--error_threshold", "--run_max_try", "--append_row_file_name",
                                      "--process_count_per_node", "--input0", "--input_fds_1", "--input_ds_0"])
def test_reserved_arguments_are_refused(argument: str) -> None:
    assert_only_error(base(arguments=["--ok", "1", argument, "2"]), "arguments", argument.split("=")[0], "reserved")


def test_first_argument_must_be_a_keyword() -> None:
    assert_only_error(base(arguments=["positional", "--x"]), "arguments", "positional")


def test_rank_mini_batch_count_is_not_supported_yet() -> None:
    assert_only_error(base(arguments=["--rank_mini_batch_count", "4"]), "arguments", "not supported")


def test_environment_variables() -> None:
    spec = parse_spec(base(environment_variables={"OMP_NUM_THREADS": 1, "_X": "y", "Flag": True}))
    assert spec.environment_variables == {"OMP_NUM_THREADS": "1", "_X": "y", "Flag": "True"}
    for bad in ({"1X": "y"}, {"A-B": "y"}, {"": "y"}, {"A": "nul\x00"}, {"AZUREML_MODEL_DIR": "/tmp"}):
        assert_only_error(base(environment_variables=bad), "environment_variables")
    assert_only_error(base(environment_variables={"A": [1]}), "environment_variables.A", "string")


def test_models() -> None:
    spec = parse_spec(base(models=["mnist", "resnet:3", "a.b-c_d:10"]))
    assert spec.effective_models() == [("mnist", None), ("resnet", 3), ("a.b-c_d", 10)]
    assert parse_spec(base(models=None)).models == []
    for bad in (["m:0"], ["m:x"], [":3"], ["m:1:2"], ["m:-1"], [""], ["m", "m:2"], ["bad name"]):
        assert_only_error(base(models=bad), "models")


# ---- inputs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "container", "prefix", "glob"), [
    ("data", "data", "", None),
    ("data/", "data", "", None),
    ("data/images", "data", "images/", None),
    ("data/images/", "data", "images/", None),
    ("data/a/b/c", "data", "a/b/c/", None),
    ("data/*.csv", "data", "", "*.csv"),
    ("data/a/b/**/*.jpg", "data", "a/b/", "**/*.jpg"),
    ("data/a/x[0-9].txt", "data", "a/", "x[0-9].txt"),
    ("data/a/?/z", "data", "a/", "?/z"),
])
def test_shorthand_paths(path: str, container: str, prefix: str, glob: str | None) -> None:
    for item in (path, {"path": path}):
        spec_input = parse_spec(base(inputs=[item])).inputs[0]
        assert (spec_input.container, spec_input.prefix, spec_input.glob) == (container, prefix, glob)
        assert spec_input.path is None and spec_input.files is None


def test_explicit_inputs_and_default_names() -> None:
    spec = parse_spec(base(inputs=[
        {"container": "data", "prefix": "in", "glob": "**/*.png"},
        {"name": "extra", "container": "more", "files": ["z.txt", "a/b.txt", "m.txt"]},
        "third-ctr/x",
    ]))
    first, second, third = spec.inputs
    assert (first.name, first.container, first.prefix, first.glob) == ("input_0", "data", "in/", "**/*.png")
    assert (second.name, second.files) == ("extra", ["z.txt", "a/b.txt", "m.txt"])  # order kept
    assert (third.name, third.container, third.prefix) == ("input_2", "third-ctr", "x/")


def test_input_names_must_be_unique_identifiers() -> None:
    assert_only_error(base(inputs=[{"name": "a", "path": "data/x"}, {"name": "a", "path": "data/y"}]), "inputs")
    assert_only_error(base(inputs=[{"name": "input_1", "path": "data/x"}, "data/y"]), "inputs", "unique")
    assert_only_error(base(inputs=[{"name": "bad name", "path": "data/x"}]), "inputs.0.name")


@pytest.mark.parametrize("container", ["ab", "Abc", "a--b", "-abc", "abc-", "a" * 64, "a_b", "a.b", "$root"])
def test_invalid_container_names(container: str) -> None:
    assert_only_error(base(inputs=[{"container": container}]), "inputs.0.container", "container name")
    assert_only_error(base(inputs=[f"{container}/x"]), "inputs.0.path", "container name")
    assert_only_error(base(output={"container": container}), "output.container", "container name")


@pytest.mark.parametrize("container", ["abc", "a" * 63, "a-b-c", "0data", "data9"])
def test_valid_container_names(container: str) -> None:
    assert parse_spec(base(inputs=[{"container": container}])).inputs[0].container == container


@pytest.mark.parametrize(("item", "field"), [
    ("data/../other", "inputs.0.path"),
    ("data//etc/passwd", "inputs.0.path"),
    ("data/a/../../x", "inputs.0.path"),
    ("data/./x", "inputs.0.path"),
    ("data/a\\..\\b", "inputs.0.path"),
    ({"container": "data", "prefix": "../x"}, "inputs.0.prefix"),
    ({"container": "data", "prefix": "/abs"}, "inputs.0.prefix"),
    ({"container": "data", "prefix": "a\\b"}, "inputs.0.prefix"),
    ({"container": "data", "glob": "../*"}, "inputs.0.glob"),
    ({"container": "data", "glob": "/x/*"}, "inputs.0.glob"),
    ({"container": "data", "files": ["../x"]}, "inputs.0.files"),
    ({"container": "data", "files": ["/etc/passwd"]}, "inputs.0.files"),
    ({"container": "data", "files": ["a/./b"]}, "inputs.0.files"),
    ({"container": "data", "files": ["ok.txt", "a\\b"]}, "inputs.0.files"),
])
def test_input_paths_never_escape_their_container(item: object, field: str) -> None:
    assert_only_error(base(inputs=[item]), field)


@pytest.mark.parametrize(("item", "field", "words"), [
    ({"path": "data/x", "container": "data"}, "inputs.0", "either path"),
    ({"path": "data/x", "glob": "*.png"}, "inputs.0", "either path"),
    ({"name": "lonely"}, "inputs.0", "container"),
    ({"container": "data", "prefix": "p", "files": ["x"]}, "inputs.0", "either files"),
    ({"container": "data", "files": []}, "inputs.0.files", "at least one"),
    ({"container": "data", "files": ["a", "b", "a"]}, "inputs.0.files", "more than once"),
    ({"container": "data", "files": ["dir/"]}, "inputs.0.files", "not a blob name"),
    ({"container": "data", "glob": ""}, "inputs.0.glob", "empty"),
    ({"container": "data", "type": "parquet"}, "inputs.0.type", ""),
])
def test_input_shape_rules(item: object, field: str, words: str) -> None:
    assert_only_error(base(inputs=[item]), field, words)


@given(st.text(alphabet="ab./\\*", min_size=1, max_size=12))
def test_any_accepted_input_path_stays_inside_its_container(rest: str) -> None:
    try:
        spec_input = parse_spec(base(inputs=[f"data/{rest}"])).inputs[0]
    except SpecError:
        return
    for part in (spec_input.prefix, spec_input.glob or ""):
        assert "\\" not in part and not part.startswith("/")
        assert ".." not in part.split("/") and "." not in part.split("/")
        assert not posixpath.normpath("root/" + (part or "x")).startswith("..")


# ---- output --------------------------------------------------------------------------------------------

def test_output_forms() -> None:
    assert parse_spec(base(output="out/run-1")).output == OutputSpec(container="out", path="run-1")
    assert parse_spec(base(output="out/a/b/")).output == OutputSpec(container="out", path="a/b")
    assert parse_spec(base(output="out")).output == OutputSpec(container="out", path="")
    output = parse_spec(base(output={"container": "out", "path": "x"})).output
    assert output is not None and output.blob_name("parallel_run_step.txt") == "x/parallel_run_step.txt"
    assert OutputSpec(container="out").blob_name("f.txt") == "f.txt"


@pytest.mark.parametrize("output", ["out/../x", "out//abs", "out/a\\b", {"container": "out", "path": "./x"},
                                    {"container": "out", "path": "a/../../b"}])
def test_output_paths_never_escape(output: object) -> None:
    assert_only_error(base(output=output), "output.path")


# ---- refusals: PRS fields not honoured yet ---------------------------------------------------------------

@pytest.mark.parametrize(("fields", "field"), [
    ({"compute_target": "cpu-cluster"}, "compute_target"),
])
def test_fields_not_supported_yet_are_refused_by_name(fields: dict[str, object], field: str) -> None:
    message = assert_only_error(base(**fields), field, "not supported")
    assert field.split(".")[-1] in message or "tabular" in message


def test_side_inputs_are_files_or_a_model_and_bind_themselves() -> None:
    assert_only_error(base(side_inputs=["data/lookup"]), "side_inputs.0", "valid dictionary")
    assert_only_error(base(side_inputs=[{"name": "a", "model": "m", "path": "data/x/"}]), "side_inputs.0",
                      "not both")
    spec = parse_spec(base(side_inputs=[{"name": "lut", "path": "data/lut/"}, {"name": "m", "model": "mdl:2"}],
                           arguments=["--lut", "${{inputs.lut}}"]))
    assert spec.all_bindings == {"inputs.lut": "side:lut", "inputs.m": "model:mdl"}
    assert spec.effective_models() == [("mdl", 2)]
    assert_only_error(base(models=["mdl:1"], side_inputs=[{"name": "m", "model": "mdl:2"}]), "arguments",
                      "pinned twice")


def test_harmless_values_of_unsupported_fields_are_accepted() -> None:
    spec = parse_spec(base(allow_reuse=False, partition_keys=None, side_inputs=[], environment=None))
    assert spec.allow_reuse is False


def test_refusals_live_in_one_table() -> None:
    assert {"compute_target"} <= set(NOT_SUPPORTED_YET) and "allow_reuse" not in NOT_SUPPORTED_YET


def test_allow_reuse_defaults_to_true_as_in_prs() -> None:
    assert parse_spec(base()).allow_reuse is True
    assert parse_spec(base(allow_reuse=True)).allow_reuse is True
    assert_only_error(base(allow_reuse="sometimes"), "allow_reuse", "boolean")


def test_an_environment_is_checked_now_and_its_files_at_submission() -> None:
    assert parse_spec(base(environment="./env/conda.yml")).environment == "./env/conda.yml"
    assert parse_spec(base(environment=["joblib==1.4.2"])).environment == ["joblib==1.4.2"]
    assert_only_error(base(environment={"name": "my-env"}), "environment", "expected a conda YAML")
    assert_only_error(base(environment="../conda.yml"), "environment", "'..' segments")
    assert_only_error(base(environment={"image": "python:3.11"}), "environment", "Docker images")


def test_tabular_inputs_default_to_prs_one_megabyte_batches() -> None:
    spec = parse_spec(base(inputs=[{"path": "data/t", "type": "tabular"}]))
    assert spec.input_type == "tabular" and spec.mini_batch_size == "1MB"  # PRS's tabular default
    assert parse_spec(base(inputs=[{"path": "data/t", "type": "tabular"}], mini_batch_size="10MB"))
    mixed = base(inputs=[{"path": "data/t", "type": "tabular"}, "data/f"])
    assert_only_error(mixed, "inputs", "same type")


# ---- text input ----------------------------------------------------------------------------------------

def test_json_text_and_bytes() -> None:
    text = json.dumps(base(name="from-json", run_max_try=5))
    assert parse_spec(text).name == "from-json"
    assert parse_spec(text.encode()).run_max_try == 5
    assert parse_spec(b"\xef\xbb\xbf" + text.encode()).name == "from-json"


def test_yaml_text() -> None:
    spec = parse_spec("""
name: predict-digits
entry_script: batch/score.py
source_directory: ./scripts
mini_batch_size: 5
error_threshold: 10
allowed_failed_count: 15
allowed_failed_percent: 10
run_max_try: 3
output_action: append_row
node_count: 2
inputs:
  - path: mnist/test/*.png
output: results/mnist
arguments: [--extra_arg, example_value, --batch, 16]
""")
    assert spec.name == "predict-digits" and spec.file_batch_size == 5 and spec.node_count == 2
    assert (spec.inputs[0].container, spec.inputs[0].prefix, spec.inputs[0].glob) == ("mnist", "test/", "*.png")
    assert spec.arguments == ["--extra_arg", "example_value", "--batch", "16"]


@pytest.mark.parametrize("text", ["- a\n- b", "a: [", "", "just text", "[1, 2]", "42", b"\xff\xfe\x00"])
def test_unparsable_or_non_mapping_text(text: str | bytes) -> None:
    errors = errors_of(text)
    assert list(errors) == ["(spec)"]


def test_non_dict_values() -> None:
    assert list(errors_of(["entry_script"])) == ["(spec)"]  # type: ignore[arg-type]
    assert list(errors_of(None)) == ["(spec)"]  # type: ignore[arg-type]


# ---- helpers: to_dict, with_overrides, frozen -------------------------------------------------------------

def test_to_dict_is_json_without_none_and_round_trips() -> None:
    spec = parse_spec(base(name="round-trip", output="out/x", models=["m:2"], inputs=[
        "data/a/**/*.jpg", {"container": "data", "files": ["b.txt"]}], environment_variables={"A": 1}))
    data = spec.to_dict()
    json.dumps(data)
    assert data["allow_reuse"] is True and "process_count_per_node" not in data
    assert all("path" not in i for i in data["inputs"])
    assert parse_spec(data) == spec
    assert parse_spec(json.dumps(data)) == spec


def test_with_overrides_revalidates_a_copy() -> None:
    spec = parse_spec(base(name="first", mini_batch_size=5))
    again = spec.with_overrides({"inputs": ["newdata/batch-2"], "mini_batch_size": 20, "arguments": ["--v", 2]})
    assert again.inputs[0].container == "newdata" and again.file_batch_size == 20
    assert again.arguments == ["--v", "2"] and again.name == "first"
    assert spec.inputs[0].container == "data" and spec.file_batch_size == 5  # the original is unchanged
    assert spec.with_overrides({"mini_batch_size": None}).mini_batch_size == "10"  # None restores the default
    with pytest.raises(SpecError) as info:
        spec.with_overrides({"run_max_try": 0, "name": "Bad_Name", "colour": "red"})
    assert {e["field"] for e in info.value.errors} == {"run_max_try", "name", "colour"}


def test_specs_are_frozen() -> None:
    spec = parse_spec(base())
    with pytest.raises(ValidationError):
        spec.run_max_try = 9  # type: ignore[misc]
    with pytest.raises(ValidationError):
        spec.inputs[0].container = "other"  # type: ignore[misc]


def test_models_can_be_built_directly() -> None:
    spec = JobSpec(entry_script="s.py", inputs=[InputSpec(path="data/x/*.txt")])
    assert spec.inputs[0].name == "input_0" and spec.inputs[0].glob == "*.txt"
    with pytest.raises(ValidationError):
        JobSpec(entry_script="s.py", inputs=["data/x"], compute_target="cpu-cluster")


@pytest.mark.parametrize("fmt", ["csv", "TSV", "parquet", "jsonl",
                                 {"kind": "delimited", "separator": ";", "support_multi_line": True}])
def test_tabular_formats(fmt: object) -> None:
    spec = parse_spec(base(inputs=[{"path": "data/t", "type": "tabular", "format": fmt}]))
    assert spec.inputs[0].format == (fmt.lower() if isinstance(fmt, str) else fmt)


def test_bad_tabular_formats_are_named() -> None:
    assert_only_error(base(inputs=[{"path": "data/t", "type": "tabular", "format": "xlsx"}]),
                      "inputs.0.format", "not one of")
    assert_only_error(base(inputs=[{"path": "data/t", "type": "tabular",
                                    "format": {"kind": "delimited", "separator": "ab"}}]),
                      "inputs.0.format", "separator")


def test_partition_keys_and_output_format() -> None:
    spec = parse_spec(base(partition_keys=["Store", "Brand"], output_format="csv"))
    assert spec.partition_keys == ["Store", "Brand"] and spec.output_format == "csv"
    assert_only_error(base(output_format="xml"), "output_format")
