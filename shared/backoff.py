"""One retry schedule for every storage client: the SDK clients (:mod:`shared.storage`), the
scoring processes' plain-HTTP reader (:mod:`shared.scoring.blobreader`) and the CLI's uploads
(:mod:`shared.cli.uploads`)."""

import random
from typing import Any

# Blob and queue clients' backoff (the SDK retry policies use it too): first retry after ~0.5 s
# (the SDK's default waits 15 s), then 2.5, 4.5, 8.5, 16.5 ... s: about two minutes in all, enough
# to ride out a storage restart.
BACKOFF: dict[str, Any] = {"initial_backoff": 0.5, "increment_base": 2, "retry_total": 8, "retry_connect": 8,
           "retry_read": 8, "retry_status": 8, "random_jitter_range": 1}


def delay_s(attempt: int) -> float:
    """The wait before retry ``attempt`` (0 first), as the SDK's exponential retry computes it
    from :data:`BACKOFF`: 0.5 s, then 2.5, 4.5, 8.5 ... s, each within +-1 s of jitter."""
    delay = BACKOFF["initial_backoff"] + (0 if attempt == 0 else BACKOFF["increment_base"] ** attempt)
    jitter = BACKOFF["random_jitter_range"]
    return random.uniform(max(0.0, delay - jitter), delay + jitter)
