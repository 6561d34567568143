"""Partition values from paths: Hive-style folders and PRS's partition_format."""

from __future__ import annotations

import pytest

from shared.errors import SubmitterError
from shared.scoring.tables import partition_of
from shared.scoring.tabular import TabularDataError, parse_partition
from shared.spec import InputSpec


@pytest.mark.parametrize("path,values", [
    ("Store=2/Brand=x/part.parquet", {"Store": "2", "Brand": "x"}),
    ("sales/Store=2/part-0.csv", {"Store": "2"}),
    ("city=S%C3%A3o%20Paulo/a=b=c/x.csv", {"city": "São Paulo", "a": "b=c"}),
    ("a/b/file=1.csv", {}),                    # the file's own name is no partition
    ("plain.csv", {}),
])
def test_hive_folders(path: str, values: dict[str, str]) -> None:
    assert parse_partition(path, None) == values


@pytest.mark.parametrize("fmt,path,values", [
    ("{user}/{season}/{genres}.wav", "bob/summer/jazz.wav",
     {"user": "bob", "season": "summer", "genres": "jazz"}),
    ("/{user}/{season}/{genres}.wav", "music/bob/summer/jazz.wav",
     {"user": "bob", "season": "summer", "genres": "jazz"}),
    ("/{Department}/{PartitionDate:yyyy/MM/dd}/data.parquet", "Accounts/2019/01/31/data.parquet",
     {"Department": "Accounts", "PartitionDate": "2019-01-31T00:00:00"}),
    ("{when:yyyyMMdd_HH}h/{name}.csv", "20240229_13h/a.b.csv",
     {"when": "2024-02-29T13:00:00", "name": "a.b"}),
    ("{a}_{b}.csv", "x_y_z.csv", {"a": "x", "b": "y_z"}),
    ("{k}/x/{k}.csv", "same/x/same.csv", {"k": "same"}),
    ("{my col}/f.csv", "v/f.csv", {"my col": "v"}),
])
def test_partition_format(fmt: str, path: str, values: dict[str, str]) -> None:
    assert parse_partition(path, fmt) == values


@pytest.mark.parametrize("fmt,path,message", [
    ("{user}/{season}/{genres}.wav", "bob/jazz.wav", "'bob/jazz.wav' does not match"),
    ("{user}/{genres}.wav", "bob/jazz.mp3", "'bob/jazz.mp3' does not match"),
    ("{k}/x/{k}.csv", "one/x/two.csv", "'one/x/two.csv' does not match"),
    ("{d:yyyy/MM/dd}/f", "2019/13/01/f", "not a valid date"),
    ("{d:yyyy/MM/dd}/f", "2019/1/01/f", "does not match"),
])
def test_paths_that_do_not_match_are_named(fmt: str, path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_partition(path, fmt)


@pytest.mark.parametrize("fmt,message", [
    ("data/file.csv", "names no partition"),
    ("{a/b.csv", "unbalanced braces"),
    ("{1x}/b.csv", "not a column name"),
    ("{d:x}/b.csv", "has none of yyyy"),
])
def test_bad_formats_are_refused(fmt: str, message: str) -> None:
    with pytest.raises(TabularDataError, match=message):
        parse_partition("a/b.csv", fmt)


@pytest.mark.parametrize("prefix,fmt,name,values", [
    ("dataset_partition_test/", "dataset_partition_test/{user}/{season}/{genres}.wav",
     "dataset_partition_test/u5/fall/piano.wav", {"user": "u5", "genres": "piano"}),
    ("dataset_partition_test/", "/dataset_partition_test/{user}/{season}/{genres}.wav",
     "dataset_partition_test/u5/fall/piano.wav", {"user": "u5", "genres": "piano"}),
    ("dataset_partition_test/", "{user}/{season}/{genres}.wav",
     "dataset_partition_test/u5/fall/piano.wav", {"user": "u5", "genres": "piano"}),
    ("music/", "{genres}/{user}.wav", "music/piano/u5.wav", {"user": "u5", "genres": "piano"}),
    ("", "data/{user}/{genres}.wav", "data/u5/piano.wav", {"user": "u5", "genres": "piano"}),
])
def test_a_partition_format_may_carry_the_input_s_prefix(prefix: str, fmt: str, name: str,
                                                        values: dict[str, str]) -> None:
    spec = InputSpec(container="songs", prefix=prefix, partition_format=fmt)
    assert partition_of(spec.wire, name, ["user", "genres"]) == values


def test_a_format_below_the_prefix_still_matches_below_it() -> None:
    # "{a}/{b}.wav" would match "music/x.wav" whole; below the prefix there is one segment only
    spec = InputSpec(container="songs", prefix="music/", partition_format="{a}/{b}.wav")
    with pytest.raises(SubmitterError, match="does not match"):
        partition_of(spec.wire, "music/x.wav", ["a", "b"])
