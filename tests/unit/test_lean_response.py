"""The blob reader's HTTP answers: read like ``http.client``'s own, without the ``email`` package."""

from __future__ import annotations

import http.client
import io

import pytest

from shared.scoring.blobreader import LeanResponse


class _Sock:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))


ANSWERS = {
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"0x1\"\r\nx-ms-version: 2025-01-05\r\n\r\nhello",
    "range": b"HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 0-2/10\r\nContent-Length: 3\r\n\r\nabc",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    "close": b"HTTP/1.1 503 Server Busy\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy",
    "no length": b"HTTP/1.1 200 OK\r\nx-ms-request-id: 1\r\n\r\nuntil the end",
    "no content": b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    "repeated": b"HTTP/1.1 200 OK\r\nVary: a\r\nvary: b\r\nContent-Length: 2\r\n\r\nok",
    "continue first": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    "http/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "bad length": b"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\nabcd",
}


def read(cls: type[http.client.HTTPResponse], data: bytes) -> tuple[object, ...]:
    response = cls(_Sock(data), method="GET")   # type: ignore[arg-type]
    response.begin()
    names = ("content-length", "etag", "content-range", "vary", "x-ms-version", "missing")
    head = (response.status, response.reason, response.version, response.will_close, response.chunked,
            tuple(response.getheader(n.upper()) for n in names))
    return head + (response.read(),)


@pytest.mark.parametrize("case", ANSWERS)
def test_an_answer_reads_as_http_client_reads_it(case: str) -> None:
    assert read(LeanResponse, ANSWERS[case]) == read(http.client.HTTPResponse, ANSWERS[case])


@pytest.mark.parametrize("data", [b"SPDY/3 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n"])
def test_what_http_client_refuses_is_refused(data: bytes) -> None:
    for cls in (LeanResponse, http.client.HTTPResponse):
        with pytest.raises(http.client.HTTPException):
            cls(_Sock(data), method="GET").begin()   # type: ignore[arg-type]
