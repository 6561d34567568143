"""What a scoring process may write: its own work dir, and nothing of the host's or other jobs'.

Two layers. Extracted code and cached model files are read-only (files 0444, folders 0555, see
:mod:`shared.service.working.scratch`): that stops a script running as an ordinary user. On Linux 5.13+ the
scoring process also restricts itself with Landlock before it imports the entry script: from then
on it (and every process it starts) can create, change or remove files only beneath its work dir
(cwd, ``output/``, ``logs/``, and ``tmp/``, which ``TMPDIR`` points to), ``/dev`` and the folders of
``Settings.sandbox_writable``. Landlock binds root too, and cannot be undone by the process. Reads
are not restricted. Where Landlock is missing the process runs with the read-only files only and
says so in its log. ``PARALLELRUN_SANDBOX=0`` turns the Landlock layer off.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterable

log = logging.getLogger("parallelrun.sandbox")

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446   # the same on x86_64 and arm64
_VERSION = 1                    # LANDLOCK_CREATE_RULESET_VERSION
_PATH_BENEATH = 1               # LANDLOCK_RULE_PATH_BENEATH
_PR_SET_NO_NEW_PRIVS = 38

WRITE_FILE, REMOVE_DIR, REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
MAKE = sum(1 << b for b in range(6, 13))       # char, dir, reg, sock, fifo, block, sym
REFER, TRUNCATE = 1 << 13, 1 << 14             # ABI 2, ABI 3


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def write_rights(abi: int) -> int:
    """The write-type file-system rights Landlock ABI ``abi`` knows (pure)."""
    rights = WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI, 0 where there is none (not Linux, too old, or disabled)."""
    if not hasattr(os, "O_PATH"):
        return 0
    try:
        version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(0, int(version))


def restrict_writes(writable: Iterable[str]) -> int:
    """Allow this process (and its children) to write only beneath ``writable``; returns the
    Landlock ABI used, 0 if unavailable (nothing restricted). Irreversible."""
    abi = abi_version()
    if abi < 1:
        return 0
    libc = _libc()
    rights = write_rights(abi)
    attr = _RulesetAttr(rights)
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path in writable:
            if not os.path.isdir(path):
                continue
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(rights, fd)
                if libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_PATH_BENEATH),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi
