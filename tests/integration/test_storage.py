"""The storage layer provisions every resource on a real Azurite and round-trips base64 queue messages."""

from shared.storage import Storage


def test_ensure_creates_every_resource_idempotently(storage: Storage) -> None:
    storage.ensure()  # second time: no error
    s = storage.settings
    queues = {q.name for q in storage.queue_service.list_queues()}
    assert {*s.queues, *(q + s.poison_suffix for q in s.queues)} <= queues
    tables = {t.name for t in storage.table_service.list_tables()}
    assert set(s.tables) <= tables
    containers = {c.name for c in storage.blob_service.list_containers()}
    assert set(s.containers) <= containers


def test_queue_messages_are_base64_on_the_wire(storage: Storage) -> None:
    q = storage.queue(storage.settings.batch_queue)
    q.send_message('{"job": "j"}')
    raw = storage.queue_service.get_queue_client(storage.settings.batch_queue)  # no decode policy
    [msg] = raw.receive_messages(max_messages=1)
    assert msg.content == "eyJqb2IiOiAiaiJ9"
