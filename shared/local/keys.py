"""The opt-in local key: app setting ``PARALLELRUN_LOCAL_KEY``, kept in ``local.settings.json``.

With a key, the local host answers 401 to every route but health unless the request carries it
(header ``x-functions-key`` or ``?code=``, as Azure's function keys). ``parallelrun up
--require-key`` reads the key from the environment or ``local.settings.json`` Values, or generates
one and saves it there (the file is private to its owner); the CLI reads it from the same places.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from shared.errors import SubmitterError
from shared.settings import LOCAL_KEY_SETTING

HEADER = "x-functions-key"


def ensure_key(local_settings: Path) -> tuple[str, bool]:
    """The key saved in ``local_settings`` Values, or a new one saved there; (key, generated)."""
    try:
        doc = json.loads(local_settings.read_text()) if local_settings.exists() else {}
    except (OSError, ValueError) as exc:
        raise SubmitterError(f"cannot read {local_settings}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.setdefault("Values", {}), dict):
        raise SubmitterError(f"{local_settings} must hold an object with a Values object")
    if doc["Values"].get(LOCAL_KEY_SETTING):
        return str(doc["Values"][LOCAL_KEY_SETTING]), False
    key = secrets.token_urlsafe(32)
    doc.setdefault("IsEncrypted", False)
    doc["Values"][LOCAL_KEY_SETTING] = key
    fd = os.open(local_settings, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
    os.chmod(local_settings, 0o600)
    return key, True


def headers(key: str | None) -> dict[str, str]:
    """The request headers that carry ``key`` (none without one)."""
    return {HEADER: key} if key else {}
