"""Entity-group transactions without the SDK's MIME machinery: the same request for 40 % of the CPU.

``TableClient.submit_transaction`` builds its ``multipart/mixed`` body with the ``email`` package
(a generator that compiles a new regular expression for every random boundary) and parses the
answer with it again: ~3.6 ms of client CPU per transaction, three times any other ledger request,
and a worker commits one per mini-batch. This module sends the same transaction with the body
written and the answer read as plain text (the format is fixed: `Performing entity group
transactions`_), and keeps everything else of the SDK: its batch builder makes each operation's
request (entity serialisation, keys, ``If-Match``), and the table client's own pipeline signs,
retries (the ledger's POSTs are retried: see :func:`shared.storage._retry_table_posts`) and counts
the request. Answers and failures are the SDK's: a list of ``{"etag": ...}``, one per operation, or
:class:`TableTransactionError` with the status, error code and failed operation's index.

.. _Performing entity group transactions:
   https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import RequestTooLargeError, TableClient, TableTransactionError
from azure.data.tables._table_batch import TableBatchOperations

MAX_ANSWER = 4 << 20      # an answer to 100 operations is a few tens of KiB
_LINE = re.compile(rb"\r?\n")
_BOUNDARY = re.compile(rb'boundary="?([^";\r\n]+)"?', re.IGNORECASE)


class _Part:
    """One operation's answer, with what the SDK's errors read of a response."""

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.reason, self.headers, self._body = status, reason, headers, body
        self.content_type = headers.get("content-type", "")
        self.request: Any = None

    def body(self) -> bytes:
        return self._body

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode(encoding or "utf-8", errors="replace")


def submit(table: TableClient, operations: Iterable[Any]) -> list[Mapping[str, Any]]:
    """``table.submit_transaction(operations)``, the same request and answers, written and read
    here (see the module's docstring)."""
    builder = TableBatchOperations(config=table._client._config,   # noqa: SLF001 - the SDK's own builder
                                   endpoint=f"{table.scheme}://{table._primary_hostname}",  # noqa: SLF001
                                   table_name=table.table_name,
                                   is_cosmos_endpoint=table._cosmos_endpoint)  # noqa: SLF001
    for operation in operations:
        builder.add_operation(operation)
    if not builder.requests:
        return []
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    body = encode(batch, changeset, builder.requests)
    request = HttpRequest("POST", f"{table.scheme}://{table._primary_hostname}/$batch",  # noqa: SLF001
                          headers={"x-ms-version": table.api_version, "DataServiceVersion": "3.0",
                                   "MaxDataServiceVersion": "3.0;NetFx", "Accept": "application/json",
                                   "Content-Type": f"multipart/mixed; boundary={batch}"},
                          content=body)
    # the client's own pipeline: signed, retried, counted; streamed, as the SDK does, so that no
    # policy tries to decode the multipart answer
    response = table._client.send_request(request, stream=True)   # noqa: SLF001
    answer = response.read()
    if len(answer) > MAX_ANSWER:
        raise HttpResponseError(f"the answer to a transaction on {table.table_name} is over "
                                f"{MAX_ANSWER} bytes")
    if response.status_code != 202:    # refused whole (413: too large, as the SDK says it)
        kind: type[HttpResponseError] = RequestTooLargeError if response.status_code == 413 else HttpResponseError
        raise _error(_Part(response.status_code, response.reason or "", _lower(response.headers),
                           answer), kind, table.table_name)
    parts = decode(response.headers.get("content-type", ""), answer)
    failed = next((p for p in parts if not 200 <= p.status_code < 300), None)
    if failed is not None:
        kind = RequestTooLargeError if failed.status_code == 413 else TableTransactionError
        raise _error(failed, kind, table.table_name)
    if len(parts) != len(builder.requests):
        raise HttpResponseError(f"a transaction of {len(builder.requests)} operations on "
                                f"{table.table_name} was answered with {len(parts)} parts")
    return [{"etag": p.headers["etag"]} if "etag" in p.headers else {} for p in parts]


def encode(batch: str, changeset: str, requests: list[HttpRequest]) -> bytes:
    """The ``$batch`` body: one changeset holding ``requests`` (pure)."""
    out = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
    for index, sub in enumerate(requests):
        content = sub.content if isinstance(sub.content, bytes) else (sub.content or "").encode()
        headers = {k: v for k, v in sub.headers.items() if k.lower() != "content-length"}
        lines = [f"--{changeset}", "Content-Type: application/http",
                 "Content-Transfer-Encoding: binary", f"Content-ID: {index}", "",
                 f"{sub.method} {sub.url} HTTP/1.1",
                 *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {len(content)}", "", ""]
        out.append("\r\n".join(lines).encode() + content + b"\r\n")
    out.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n".encode())
    return b"".join(out)


def decode(content_type: str, body: bytes) -> list[_Part]:
    """The operations' answers in a ``$batch`` answer (pure): a changeset's parts, or the one
    part of an answer without a changeset (a batch the service refused as a whole)."""
    found = _BOUNDARY.search(content_type.encode())
    if found is None:
        raise HttpResponseError(f"a transaction's answer is not multipart: {content_type!r}")
    answers = []
    for part in _split(body, found.group(1)):
        head, rest = _head(part)
        inner = _BOUNDARY.search(head.get("content-type", "").encode())
        if head.get("content-type", "").lower().startswith("multipart/mixed") and inner:
            answers += [_http(_head(p)[1]) for p in _split(rest, inner.group(1))]
        else:
            answers.append(_http(rest))
    return answers


def _split(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between ``--boundary`` lines, up to ``--boundary--``."""
    delimiter = b"--" + boundary
    chunks = body.split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.lstrip(b"\r\n"))
    return parts


def _head(part: bytes) -> tuple[dict[str, str], bytes]:
    """A part's headers (lower-case names) and what follows the blank line after them."""
    lines = _LINE.split(part)
    headers: dict[str, str] = {}
    for at, line in enumerate(lines):
        if not line.strip():
            return headers, part.split(b"\n", at + 1)[-1] if at + 1 < len(lines) else b""
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, b""


def _http(message: bytes) -> _Part:
    """An embedded HTTP answer: ``HTTP/1.1 204 No Content``, headers, a blank line, a body."""
    status_line, _, after = message.partition(b"\n")
    pieces = status_line.decode("latin-1").strip().split(" ", 2)
    if len(pieces) < 2 or not pieces[0].startswith("HTTP/") or not pieces[1].isdigit():
        raise HttpResponseError(f"a transaction's answer holds no HTTP status line: {status_line[:100]!r}")
    headers, body = _head(after)
    return _Part(int(pieces[1]), pieces[2] if len(pieces) > 2 else "", headers, body.rstrip(b"\r\n"))


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _error(part: _Part, kind: type[HttpResponseError], table_name: str) -> HttpResponseError:
    """The SDK's error for a failed answer: its message (for a failed operation ``index:text``,
    from which :class:`TableTransactionError` takes the index) and error code."""
    code = part.headers.get("x-ms-error-code", "")
    message = part.reason or f"HTTP {part.status_code}"
    try:
        odata = json.loads(part.text()).get("odata.error", {})
        code = odata.get("code") or code
        message = odata.get("message", {}).get("value") or message
    except (ValueError, AttributeError):
        pass
    if code == "TableNotFound":
        message += f" (table {table_name})"
    error = kind(message=f"{message}\nErrorCode:{code}", response=part)
    error.error_code = code  # type: ignore[attr-defined]
    return error
