"""The ``$batch`` body and answer of an entity-group transaction, as plain text (pure)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from shared.service.ledger.transactions import decode, encode

ANSWER = """--batchresponse_b1
Content-Type: multipart/mixed; boundary=changesetresponse_c1

--changesetresponse_c1
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 201 Created
Content-ID: 1
Content-Type: application/json;odata=minimalmetadata
ETag: W/"0x5B168C7B6E589D2"

{"odata.metadata":"https://acct.table.core.windows.net/$metadata#ledger/@Element","RowKey":"a"}
--changesetresponse_c1
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 204 No Content
Content-ID: 2
ETag: W/"datetime'2026-12-07T00%3A48%3A22.3047105Z'"


--changesetresponse_c1--
--batchresponse_b1--
"""


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_a_changesets_answers_are_read_in_order_with_their_etags(newline: str) -> None:
    body = ANSWER.replace("\n", newline).encode()
    parts = decode("multipart/mixed; boundary=batchresponse_b1", body)
    assert [(p.status_code, p.reason) for p in parts] == [(201, "Created"), (204, "No Content")]
    assert [p.headers["etag"] for p in parts] == ['W/"0x5B168C7B6E589D2"',
                                                 "W/\"datetime'2026-12-07T00%3A48%3A22.3047105Z'\""]
    assert parts[0].text().startswith('{"odata.metadata"') and parts[1].body() == b""


def test_a_failed_operation_carries_its_error_body() -> None:
    body = (b"--batchresponse_b2\r\nContent-Type: multipart/mixed; boundary=changesetresponse_c2\r\n\r\n"
            b"--changesetresponse_c2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            b"HTTP/1.1 412 Precondition Failed\r\nContent-ID: 2\r\n"
            b"Content-Type: application/json;odata=minimalmetadata;charset=utf-8\r\n\r\n"
            b'{"odata.error":{"code":"UpdateConditionNotSatisfied","message":{"value":"1:The update'
            b' condition specified in the request was not satisfied."}}}\r\n'
            b"--changesetresponse_c2--\r\n--batchresponse_b2--\r\n")
    (part,) = decode('multipart/mixed; boundary="batchresponse_b2"', body)
    assert part.status_code == 412 and "UpdateConditionNotSatisfied" in part.text()
    assert part.content_type.startswith("application/json")


def test_a_batch_refused_as_a_whole_is_one_answer_without_a_changeset() -> None:
    body = (b"--batchresponse_b3\r\nContent-Type: application/http\r\n\r\n"
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n"
            b'{"odata.error":{"code":"InvalidInput","message":{"value":"0:Bad."}}}\r\n'
            b"--batchresponse_b3--\r\n")
    (part,) = decode("multipart/mixed; boundary=batchresponse_b3", body)
    assert part.status_code == 400 and "InvalidInput" in part.text()


@pytest.mark.parametrize("content_type,body", [
    ("application/json", b"{}"),
    ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: application/http\r\n\r\nnot http\r\n--b--"),
])
def test_an_answer_that_is_not_a_transactions_is_an_error_not_a_guess(content_type: str, body: bytes) -> None:
    with pytest.raises(HttpResponseError):
        decode(content_type, body)


def test_the_body_holds_each_request_with_its_byte_length() -> None:
    subs = [HttpRequest("PATCH", "https://acct.table.core.windows.net/ledger(PartitionKey='p',RowKey='a')",
                        headers={"If-Match": "W/\"x\"", "Content-Length": "999"}, json={"s": "é"}),
            HttpRequest("POST", "https://acct.table.core.windows.net/ledger", json={"n": 1})]
    body = encode("batch_1", "changeset_2", subs).decode()
    assert body.startswith("--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_2\r\n\r\n")
    assert body.endswith("--changeset_2--\r\n\r\n--batch_1--\r\n")
    first, second = body.split("--changeset_2\r\n")[1:3]
    assert ("Content-ID: 0\r\n\r\n"
            "PATCH https://acct.table.core.windows.net/ledger(PartitionKey='p',RowKey='a') HTTP/1.1") in first
    assert "If-Match: W/\"x\"" in first and "999" not in first
    payload = first.split("\r\n\r\n", 2)[2].rstrip("\r\n")
    assert f"Content-Length: {len(payload.encode())}" in first
    assert "Content-ID: 1\r\n\r\nPOST https://acct.table.core.windows.net/ledger HTTP/1.1" in second
