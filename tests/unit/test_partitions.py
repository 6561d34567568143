"""Planning with partition_keys, the pure parts: grouping a page by combination, merging a
combination's pages, the sizes one row holds, and the row keys."""

from __future__ import annotations

import pytest

from shared.errors import SubmitterError
from shared.service.ledger import rows
from shared.service.planning import partitions
from shared.spec import InputSpec

SONGS = InputSpec(container="songs", partition_format="{user}/{season}/{genres}.wav")


def test_a_page_is_grouped_by_combination_in_order_of_first_appearance() -> None:
    items = [[0, "u5/fall/piano.wav"], [0, "u5/fall/rock.wav"], [0, "u5/winter/piano.wav"],
             [0, "u6/fall/piano.wav"], [0, "u5/winter/rock.wav"]]
    found = partitions.combinations(items, [SONGS], ["user", "genres"])
    assert [(c.values, c.first, [name for _, name in c.items]) for c in found] == [
        ({"user": "u5", "genres": "piano"}, 0, ["u5/fall/piano.wav", "u5/winter/piano.wav"]),
        ({"user": "u5", "genres": "rock"}, 1, ["u5/fall/rock.wav", "u5/winter/rock.wav"]),
        ({"user": "u6", "genres": "piano"}, 3, ["u6/fall/piano.wav"]),
    ]


def test_a_combination_never_spans_inputs_and_its_key_is_stable() -> None:
    other = InputSpec(container="other", partition_format="{user}/{season}/{genres}.wav")
    items = [[0, "u5/fall/piano.wav"], [1, "u5/fall/piano.wav"], [0, "u5/spring/piano.wav"]]
    found = partitions.combinations(items, [SONGS, other], ["user", "genres"])
    assert [(c.input_index, len(c.items)) for c in found] == [(0, 2), (1, 1)]
    assert found[0].combo == partitions.combination_key(0, ["u5", "piano"])
    assert found[0].combo != found[1].combo == partitions.combination_key(1, ["u5", "piano"])
    assert len(found[0].combo) == 32


def test_tables_pieces_of_one_file_stay_together() -> None:
    hive = InputSpec(container="sales", type="tabular")
    pieces = [[0, f"Store={s}/Brand={b}/p.csv", {"kind": "csv", "range": [r, r + 1]}]
              for s in (1, 2) for b in ("x", "y") for r in (0, 1)]
    found = partitions.combinations(pieces, [hive], ["Brand"])
    assert [(c.values, [(it[1], it[2]["range"][0]) for it in c.items]) for c in found] == [
        ({"Brand": "x"}, [("Store=1/Brand=x/p.csv", 0), ("Store=1/Brand=x/p.csv", 1),
                          ("Store=2/Brand=x/p.csv", 0), ("Store=2/Brand=x/p.csv", 1)]),
        ({"Brand": "y"}, [("Store=1/Brand=y/p.csv", 0), ("Store=1/Brand=y/p.csv", 1),
                          ("Store=2/Brand=y/p.csv", 0), ("Store=2/Brand=y/p.csv", 1)]),
    ]


def test_a_file_without_a_key_is_the_submitter_s_error() -> None:
    with pytest.raises(SubmitterError, match=r"partition_keys \['mood'\] are not in the path"):
        partitions.combinations([[0, "u5/fall/piano.wav"]], [SONGS], ["user", "mood"])


def test_pages_merge_in_page_order_and_a_file_listed_twice_is_taken_once() -> None:
    a, b, c, d = ([0, f"{n}.wav"] for n in "abcd")
    piece0, piece1 = [0, "t.csv", {"range": [0, 5]}], [0, "t.csv", {"range": [5, 9]}]
    assert partitions.merge([(3, [c]), (1, [a, b])]) == [a, b, c]
    # page 1 was listed again after the listing moved: b is on page 2 as well
    assert partitions.merge([(1, [a, b]), (2, [b, d])]) == [a, b, d]
    assert partitions.merge([(0, [piece0, piece1]), (1, [piece0])]) == [piece0, piece1]
    assert partitions.merge([(0, [[1, "a.wav"]]), (1, [a])]) == [[1, "a.wav"], a]   # inputs differ


def test_a_combination_larger_than_a_mini_batch_row_is_refused_by_name() -> None:
    name = "u5/fall/" + "p" * 200 + ".wav"
    fits = [[0, name]] * (partitions.ITEMS_CHARS // (len(name) + 8))
    assert len(partitions.check_size(fits, [SONGS])) <= partitions.ITEMS_CHARS
    with pytest.raises(SubmitterError, match=r"partition of 'u5/fall/p+\.wav' \(input songs/\) has more"):
        partitions.check_size(fits * 2, [SONGS])
    # a row that size stays under the Table service's 1 MiB (strings count 2 bytes a character)
    entity = rows.order_entity("job", 1, 2, "c" * 32, fits)
    assert sum(2 * len(v) for v in entity.values() if isinstance(v, str)) < 1_000_000


def test_row_keys_sort_by_first_appearance_and_stay_out_of_other_kinds_ranges() -> None:
    combo = "f" * 32
    keys = [rows.order_key(page, pos, c) for page, pos, c in
            [(0, 7, combo), (1, 0, "0" * 32), (1, 12, combo), (10, 3, combo), (10, 30, "0" * 32)]]
    assert sorted(keys) == keys
    every = keys + [rows.seen_key(combo), rows.continuation_key(combo, 3)]
    for key in every:
        assert key[:2] in rows.PARTITION_ROWS
        assert key != rows.JOB_KEY
        assert not ("b" <= key < "c" or "c-" <= key < "c." or "e" <= key < "f")   # batches, counters, errors
        assert "po" < key < "pp" if key.startswith("po") else True
    cont = [rows.continuation_key(combo, p) for p in (2, 11, 100)]
    assert sorted(cont) == cont and all(f"pc{combo}-" <= k < f"pc{combo}." for k in cont)


def test_transactions_hold_at_most_100_rows_and_3_million_characters() -> None:
    small = [{"PartitionKey": "j", "RowKey": f"r{i}", "n": i} for i in range(250)]
    assert [len(c) for c in rows.transaction_chunks(small)] == [100, 100, 50]
    big = [{"PartitionKey": "j", "RowKey": f"r{i}", "items": "x" * 1_000_000} for i in range(7)]
    assert [len(c) for c in rows.transaction_chunks(big)] == [2, 2, 2, 1]
    assert rows.transaction_chunks([]) == []


def test_counted_chunks_ignore_those_a_longer_earlier_text_left_behind() -> None:
    entity: dict = {}
    rows.put_long(entity, "items", "a" * 70_000, counted=True)
    assert entity["items_n"] == 3
    rows.put_long(entity, "items", "[1,2]", counted=True)   # merged over the first
    assert entity["items_2"] and rows.get_long(entity, "items") == "[1,2]"
    plain: dict = {}
    rows.put_long(plain, "spec", "b" * 40_000)
    assert "spec_n" not in plain and rows.get_long(plain, "spec") == "b" * 40_000
    with pytest.raises(ValueError, match="too large"):
        rows.put_long({}, "items", "c" * (rows.PARTITION_ITEMS_CHARS + 1), rows.PARTITION_CHUNKS)
