"""How ``BlobReader.read_range`` reads an answer (without a server: see
tests/integration/test_tabular_reads.py for Azurite), and the idle-connection check."""

from __future__ import annotations

import http.client
import socket
from typing import Any

import pytest

from shared.scoring.blobreader import BlobReadError, _ranged_body, closed_by_server


class Answer:
    """The part of ``http.client.HTTPResponse`` that ``_ranged_body`` reads."""

    def __init__(self, status: int, body: bytes, content_range: str | None = None) -> None:
        self.status, self._body, self._range = status, body, content_range

    def read(self) -> bytes:
        return self._body

    def getheader(self, name: str, default: Any = None) -> Any:
        return self._range if name == "Content-Range" else default


BLOB = b"0123456789"


@pytest.mark.parametrize(("answer", "offset", "length", "expected"), [
    (Answer(206, b"2345", "bytes 2-5/10"), 2, 4, (b"2345", 10)),
    (Answer(206, b"89", "bytes 8-9/10"), 8, 5, (b"89", 10)),
    (Answer(206, b"", "bytes 10-9/10"), 10, 5, (b"", 10)),           # Azurite at the very end
    (Answer(416, b"<Error/>", "bytes */10"), 12, 5, (b"", 10)),      # past the end
    (Answer(416, b"<Error/>", "bytes */0"), 0, 1, (b"", 0)),         # an empty blob, on Azure
    (Answer(206, b"", "bytes 0--1/0"), 0, 1, (b"", 0)),              # ... and on Azurite
    (Answer(200, BLOB), 3, 4, (b"3456", 10)),                        # the range was ignored
])
def test_an_answer_gives_the_bytes_and_the_size(answer: Answer, offset: int, length: int,
                                                expected: tuple[bytes, int]) -> None:
    assert _ranged_body(answer, offset, length) == expected   # type: ignore[arg-type]


def test_a_body_of_the_wrong_length_is_an_incomplete_read_which_is_retried() -> None:
    for answer in (Answer(206, b"234", "bytes 2-5/10"), Answer(206, BLOB, "bytes NaN-3/10")):
        with pytest.raises(http.client.IncompleteRead):
            _ranged_body(answer, 2, 4)   # type: ignore[arg-type]


@pytest.mark.parametrize("content_range", [None, "", "bytes 2-5/*", "items 2-5/10"])
def test_an_unusable_content_range_is_an_error(content_range: str | None) -> None:
    with pytest.raises(BlobReadError, match="Content-Range"):
        _ranged_body(Answer(206, b"2345", content_range), 2, 4)   # type: ignore[arg-type]


def test_a_connection_the_server_closed_while_idle_is_replaced_before_use() -> None:
    """Servers close idle keep-alive connections (Azurite after 5 s); a GET sent on one would
    fail and be retried only after a backoff sleep."""
    ours, theirs = socket.socketpair()
    conn = http.client.HTTPConnection("127.0.0.1")
    conn.sock = ours
    try:
        assert not closed_by_server(conn)
        theirs.close()
        assert closed_by_server(conn)
        assert not closed_by_server(http.client.HTTPConnection("127.0.0.1"))   # not connected
    finally:
        ours.close()
