"""Limits on submissions: every oversized or too deeply nested spec is refused with the field and
the setting named, within a bounded CPU time (thread CPU of a direct call); zips are checked before
anything expands past the limit; the limits are settings that survive the round trip."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from shared.errors import SpecError, SubmitterError
from shared.limits import Limits
from shared.service.working import snapshots
from shared.settings import Settings
from shared.spec import parse_spec

SNAPSHOT = "snapshot:" + "0" * 64
CPU_BOUND_S = 1.0   # generous: each refusal below costs a few milliseconds


def spec(**fields: Any) -> dict[str, Any]:
    return {"entry_script": "score.py", "source_directory": SNAPSHOT, "inputs": ["data/in/"], **fields}


def refusal(text: str | bytes, limits: Limits = Limits()) -> dict[str, str]:
    """The errors of parsing ``text`` as a submission, after asserting its CPU cost is bounded."""
    started = time.thread_time()
    with pytest.raises(SpecError) as refused:
        parse_spec(text, limits)
    assert time.thread_time() - started < CPU_BOUND_S
    return {e["field"]: e["message"] for e in refused.value.errors}


def as_json(data: Any) -> str:
    return json.dumps(data)


def as_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))


FORMATS = pytest.mark.parametrize("dump", [as_json, as_yaml], ids=["json", "yaml"])


# -- nesting, numbers, size --------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '{"a": ' * 100_000 + "1" + "}" * 100_000,
    "a:\n" + "- " * 10_000 + "1",                       # block YAML
    "a: " + "[" * 10_000 + "]" * 10_000,                # flow YAML
    "".join(f"{' ' * i}k{i}:\n" for i in range(500)) + " " * 500 + "v",
], ids=["json-list", "json-object", "yaml-block", "yaml-flow", "yaml-mappings"])
def test_deep_nesting_is_refused_naming_the_depth_limit(text: str) -> None:
    errors = refusal(text)
    assert "PARALLELRUN_MAX_SPEC_DEPTH" in " ".join(errors.values()), errors


@pytest.mark.parametrize("text", ['["' + '\\"' * 300_000, '"' * 1_000_000, "{" + "'[" * 300_000],
                         ids=["escaped-quotes", "quotes", "single-quoted-brackets"])
def test_text_built_to_make_the_scan_backtrack_costs_little(text: str) -> None:
    assert refusal(text)


@FORMATS
def test_a_huge_integer_is_refused_naming_the_digit_limit(dump: Callable[[Any], str]) -> None:
    text = dump(spec(node_count=7)).replace("7", "7" * 100_000)
    errors = refusal(text)
    assert "PARALLELRUN_MAX_INT_DIGITS" in " ".join(errors.values()), errors


def test_an_oversized_body_is_refused_before_it_is_parsed() -> None:
    body = as_json(spec(description="x" * 5_000)).encode() + b" " * (2 << 20)
    errors = refusal(body)
    assert "PARALLELRUN_MAX_BODY_BYTES" in errors["(spec)"] and "bytes" in errors["(spec)"]


# -- lists, mappings, strings ------------------------------------------------------------------
@FORMATS
def test_a_huge_files_list_is_refused_naming_the_field(dump: Callable[[Any], str]) -> None:
    names = [f"f{i}.bin" for i in range(20_000)]
    errors = refusal(dump(spec(inputs=[{"container": "data", "files": names}])), Limits(
        max_body_bytes=10 << 20))
    assert "PARALLELRUN_MAX_FILES" in errors["inputs.0.files"]


def test_duplicate_files_are_found_in_linear_time() -> None:
    names = [f"f{i}.bin" for i in range(10_000)] + ["f17.bin"]
    errors = refusal(as_json(spec(inputs=[{"container": "data", "files": names}])),
                     Limits(max_files=20_000))
    assert "'f17.bin'" in errors["inputs.0.files"]


@FORMATS
@pytest.mark.parametrize("field,value,named", [
    ("description", "d" * 700_000, "description"),
    ("arguments", ["--x", "a" * 100_000], "arguments.1"),
    ("environment_variables", {"BIG": "v" * 100_000}, "environment_variables.BIG"),
])
def test_an_over_long_string_is_refused_naming_its_field(
        dump: Callable[[Any], str], field: str, value: Any, named: str) -> None:
    errors = refusal(dump(spec(**{field: value})))
    assert "PARALLELRUN_MAX_STRING_CHARS" in errors[named], errors


@FORMATS
def test_too_many_entries_are_refused_naming_the_field(dump: Callable[[Any], str]) -> None:
    errors = refusal(dump(spec(environment_variables={f"V{i}": "1" for i in range(50_000)})))
    assert "PARALLELRUN_MAX_ITEMS" in errors["environment_variables"]


@FORMATS
def test_too_many_fields_are_refused(dump: Callable[[Any], str]) -> None:
    errors = refusal(dump({**spec(), **{f"field{i}": 1 for i in range(50_000)}}))
    assert "PARALLELRUN_MAX_ITEMS" in errors["(spec)"]


def test_yaml_aliases_cannot_multiply_the_values_to_walk() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    errors = refusal("\n".join(lines))
    assert any("values" in message for message in errors.values()), errors


def test_a_spec_too_large_for_its_job_row_is_refused() -> None:
    names = [f"folder/subfolder/file-{i:06d}.bin" for i in range(9_000)]
    errors = refusal(as_json(spec(inputs=[{"container": "data", "files": names}])))
    assert "PARALLELRUN_MAX_SPEC_CHARS" in errors["(spec)"]


def test_a_spec_within_the_limits_is_accepted() -> None:
    names = [f"f{i}.bin" for i in range(5_000)]
    text = as_yaml(spec(inputs=[{"container": "data", "files": names}], description="d" * 8_000,
                        environment_variables={"A": "1"}, arguments=["--n", 3]))
    assert len(parse_spec(text, Limits()).inputs[0].files or []) == 5_000


# -- zips ----------------------------------------------------------------------------------------
def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buf.getvalue()


def test_a_zip_bomb_is_refused_from_its_central_directory() -> None:
    bomb = zip_of({f"z{i}.bin": bytes(32 << 20) for i in range(2)})    # 64 MiB in ~64 KB
    assert len(bomb) < 1 << 20
    started = time.thread_time()
    with pytest.raises(snapshots.SnapshotLimitError, match="PARALLELRUN_MAX_SNAPSHOT_EXPANDED_BYTES"):
        snapshots.check_zip(bomb, Limits(max_snapshot_expanded_bytes=16 << 20))
    assert time.thread_time() - started < CPU_BOUND_S   # nothing was expanded


def test_a_zip_whose_headers_understate_its_size_stops_at_the_declared_bytes() -> None:
    honest = zip_of({"a.bin": bytes(8 << 20)})
    info = zipfile.ZipFile(io.BytesIO(honest)).infolist()[0]
    real = (8 << 20).to_bytes(4, "little")
    lying = honest.replace(real, (100).to_bytes(4, "little"))   # local header and central directory
    assert lying.count((100).to_bytes(4, "little")) >= 2 and info.file_size == 8 << 20
    with pytest.raises(SubmitterError, match="not a valid zip"):
        snapshots.check_zip(lying, Limits(max_snapshot_expanded_bytes=1 << 20))


def test_a_zip_with_too_many_members_is_refused() -> None:
    many = zip_of({f"m{i}.py": b"" for i in range(2_000)})
    with pytest.raises(snapshots.SnapshotLimitError, match="PARALLELRUN_MAX_SNAPSHOT_MEMBERS"):
        snapshots.check_zip(many, Limits(max_snapshot_members=1_000))


def test_a_zip_within_the_limits_is_measured() -> None:
    size = snapshots.check_zip(zip_of({"a.py": b"x = 1\n", "b/c.py": b"y"}), Limits())
    assert size == snapshots.SnapshotSize(files=2, expanded_bytes=7)


@pytest.mark.parametrize("data", [b"", b"not a zip", zip_of({"a": b"x"})[:-30]], ids=["empty", "text", "cut short"])
def test_what_is_not_a_zip_is_refused(data: bytes) -> None:
    with pytest.raises(SubmitterError, match="not a valid zip"):
        snapshots.check_zip(data, Limits())


# -- settings ------------------------------------------------------------------------------------
def test_the_limits_and_the_local_key_survive_the_settings_round_trip() -> None:
    changed = Limits(max_body_bytes=1, max_spec_depth=2, max_int_digits=3, max_string_chars=4,
                     max_items=5, max_files=6, max_spec_chars=7, max_snapshot_bytes=8,
                     max_snapshot_members=9, max_snapshot_expanded_bytes=10)
    settings = Settings(connection_string="UseDevelopmentStorage=true", limits=changed,
                        local_key="secret-key")
    back = Settings.from_env(settings.to_env())
    assert back.limits == changed and back.local_key == "secret-key"
    assert Settings.from_env({}).limits == Limits() and Settings.from_env({}).local_key is None
    assert "secret-key" not in repr(settings)


@pytest.mark.parametrize("value", ["many", "0"])
def test_a_bad_limit_setting_is_named(value: str) -> None:
    with pytest.raises(ValueError, match="PARALLELRUN_MAX_FILES"):
        Settings.from_env({"PARALLELRUN_MAX_FILES": value})


# -- folders -----------------------------------------------------------------------------------
def test_a_folder_over_the_limits_is_refused_before_it_is_zipped(tmp_path: Any) -> None:
    for i in range(5):
        (tmp_path / f"m{i}.py").write_bytes(b"x" * 100)
    with pytest.raises(snapshots.SnapshotLimitError, match="PARALLELRUN_MAX_SNAPSHOT_MEMBERS"):
        snapshots.build_zip(tmp_path, Limits(max_snapshot_members=4))
    with pytest.raises(snapshots.SnapshotLimitError,
                       match="PARALLELRUN_MAX_SNAPSHOT_EXPANDED_BYTES"):
        snapshots.build_zip(tmp_path, Limits(max_snapshot_expanded_bytes=450))
    assert snapshots.scan(tmp_path, Limits()) == snapshots.SnapshotSize(5, 500)


def test_a_link_out_of_the_folder_is_refused(tmp_path: Any) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "score.py").write_text("")
    (folder / "key.txt").symlink_to(secret)
    with pytest.raises(SubmitterError, match="key.txt is a link to a file outside the folder"):
        snapshots.build_zip(folder)


def test_every_settings_field_survives_the_env_round_trip() -> None:
    """Nodes a LocalCluster starts get their Settings through to_env()/from_env(): a field either
    drops (plan_page_size and poison_suffix once did) and the node silently runs on a default."""
    import dataclasses as dc
    changed: dict[str, object] = {}
    for f in dc.fields(Settings):
        default = f.default if f.default is not dc.MISSING else f.default_factory()  # type: ignore[misc]
        kind = str(f.type).replace(" | None", "")
        if f.name == "limits":
            changed[f.name] = dc.replace(Limits(), max_snapshot_members=123)
        elif kind == "bool":
            changed[f.name] = not default
        elif kind == "int":
            changed[f.name] = (default or 0) + 7
        elif kind == "float":
            changed[f.name] = (default or 0.0) + 0.5
        elif kind.startswith("tuple"):
            changed[f.name] = ("/a", "/b")
        else:
            changed[f.name] = f"x-{f.name}"
    settings = Settings(**changed)  # type: ignore[arg-type]
    back = Settings.from_env(settings.to_env())
    for f in dc.fields(Settings):
        assert getattr(back, f.name) == getattr(settings, f.name), f.name
