"""Output claim keys: a folder's sub-folders form one key range, its parents are enumerable."""

from shared.service.jobs import claims


def test_keys_keep_prefixes_and_carry_no_slash() -> None:
    outer, inner = claims.key("c", "a/b"), claims.key("c", "a/b/c d")
    assert "/" not in outer and inner.startswith(outer)
    assert not claims.key("c", "a/bc").startswith(outer)      # a sibling, not a sub-folder
    assert claims.key("c", "/a/b/") == outer
    assert claims.key("c", "") == claims.key("c", "/") == "c%2F"


def test_enclosing_folders() -> None:
    assert claims._enclosing("c", "a/b") == [claims.key("c", ""), claims.key("c", "a")]
    assert claims._enclosing("c", "") == []
