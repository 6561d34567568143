"""Blob-trigger receipts: what is known about one blob version for one function, and what to do.

A receipt is a small blob ``<system container>/receipts/<function>/<blob name>``; its metadata holds
the fields of :class:`Receipt`. :func:`decide` is the pure verdict the listener acts on.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.storage.blob import BlobProperties

MAX_ATTEMPTS = 5   # as the Functions host: a blob whose function fails 5 times is given up on
PENDING = ("new", "retry", "busy")   # verdicts meaning the blob version is not finished yet


@dataclass(frozen=True)
class Receipt:
    """What is known about one blob for one function."""

    blob_etag: str
    state: str = "running"
    attempts: int = 1
    node: str = ""
    heartbeat: float = 0.0
    etag: str | None = None   # the receipt blob's own ETag, for conditional updates

    def metadata(self) -> dict[str, str]:
        return {"blobetag": self.blob_etag, "state": self.state, "attempts": str(self.attempts),
                "node": self.node, "heartbeat": f"{self.heartbeat:.3f}"}

    @classmethod
    def from_properties(cls, props: BlobProperties) -> Receipt:
        meta = props.metadata or {}
        return cls(blob_etag=meta.get("blobetag", ""), state=meta.get("state", "running"),
                   attempts=int(meta.get("attempts", "1")), node=meta.get("node", ""),
                   heartbeat=float(meta.get("heartbeat", "0")), etag=props.etag)


def decide(blob_etag: str, receipt: Receipt | None, now: float, stale_after_s: float,
           max_attempts: int = MAX_ATTEMPTS) -> str:
    """What to do with a blob version: ``new``, ``retry``, ``busy``, ``give_up`` or ``skip``."""
    if receipt is None or receipt.blob_etag != blob_etag:
        return "new"
    if receipt.state in ("done", "failed"):
        return "skip"
    if receipt.state == "retry":
        return "retry"
    if now - receipt.heartbeat < stale_after_s:
        return "busy"
    return "retry" if receipt.attempts < max_attempts else "give_up"
