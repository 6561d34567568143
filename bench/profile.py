"""Tables from the host's sampling profile (:mod:`shared.local.sampler`): where its CPU goes.

    .venv/bin/python -m bench.profile AFTER.folded [--before BEFORE.folded] [--per N] [--top 15]

Reads collapsed stacks (``thread;outer;...;leaf <ns>``), less those of ``--before`` (the same
process earlier, so that only the job between is left), and prints Markdown tables: CPU by thread
group, by category (the innermost frame of a stack that belongs to a known part: request signing,
JSON, HTTP, the SDK's pipeline, our ledger code, the scoring pool's pipes, the local host's
emulation...), by file (self time: the leaf frame) and by function (self and total). ``--per N``
adds a column of milliseconds per N (mini-batches, say).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

Stack = tuple[str, ...]   # (thread group, outermost frame, ..., leaf frame)

# (category, pattern on a frame's "path:function"): the innermost frame that matches decides;
# frames that match nothing (typing, enum, re, functools...) are passed over.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [(name, re.compile(pattern)) for name, pattern in (
    ("SDK: request signing (SharedKey HMAC)", r"_shared/authentication\.py:|tables/_authentication\.py:"
                                              r"|^hmac\.py:|^hashlib\.py:"),
    ("JSON", r"^json/"),
    ("SDK: (de)serialization (XML, models, dates)", r"^xml/|_serialization\.py:|_deserialize\.py:"
                                                    r"|_serialize\.py:|_models\.py:|^isodate/|^dateutil/"),
    ("HTTP client (requests, urllib3, http.client, sockets)",
     r"^requests/|^urllib3/|^http/|^email/|^socket\.py:|^ssl\.py:|^selectors\.py:|^urllib/"),
    ("SDK: azure-core pipeline (policies, retries, tracing)", r"^azure/core/"),
    ("SDK: storage clients (building requests, responses)", r"^azure/"),
    ("logging", r"^logging/"),
    ("local host: queue, blob and timer triggers", r"^shared/local/"),
    ("ours: ledger", r"^shared/service/ledger/"),
    ("ours: scoring pool and pipes to children", r"^shared/service/working/pool\.py:|^shared/scoring/"
                                                 r"|^subprocess\.py:"),
    ("ours: outputs (staging rows)", r"^shared/service/working/outputs\.py:"),
    ("ours: worker and the rest of the service", r"^shared/|^functions/|^function_app\.py:"),
    ("threads, locks, thread pools", r"^threading\.py:|^concurrent/|^queue\.py:"),
)]


def parse(text: str) -> Counter[Stack]:
    """Collapsed stacks -> CPU ns per stack (lines that do not parse are skipped)."""
    counts: Counter[Stack] = Counter()
    for line in text.splitlines():
        stack, _, ns = line.rpartition(" ")
        if stack and ns.isdigit():
            counts[tuple(stack.split(";"))] += int(ns)
    return counts


def subtract(after: Counter[Stack], before: Counter[Stack]) -> Counter[Stack]:
    """What was added between two dumps of the same process (counts only grow)."""
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)})


def category(stack: Stack) -> str:
    for frame in reversed(stack[1:]):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def by_thread(counts: Counter[Stack]) -> Counter[str]:
    out: Counter[str] = Counter()
    for stack, ns in counts.items():
        out[stack[0]] += ns
    return out


def by_category(counts: Counter[Stack]) -> Counter[str]:
    out: Counter[str] = Counter()
    for stack, ns in counts.items():
        out[category(stack)] += ns
    return out


def by_file(counts: Counter[Stack]) -> Counter[str]:
    """Self time per file (the leaf frame's)."""
    out: Counter[str] = Counter()
    for stack, ns in counts.items():
        if len(stack) > 1:
            out[stack[-1].rsplit(":", 1)[0]] += ns
    return out


def by_function(counts: Counter[Stack]) -> tuple[Counter[str], Counter[str]]:
    """(self, total) time per ``path:function``; a recursive function counts once per stack."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for stack, ns in counts.items():
        if len(stack) > 1:
            own[stack[-1]] += ns
        for frame in set(stack[1:]):
            total[frame] += ns
    return own, total


def _table(title: str, rows: Iterable[tuple[str, ...]], header: tuple[str, ...]) -> str:
    lines = [f"{title}\n", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(counts: Counter[Stack], top: int = 15, per: int | None = None, per_name: str = "mini-batch") -> str:
    """The four tables in Markdown."""
    whole = sum(counts.values()) or 1

    def cells(ns: int) -> tuple[str, ...]:
        share = (f"{ns / 1e9:.2f}", f"{ns / whole:.1%}")
        return share + ((f"{ns / 1e6 / per:.2f}",) if per else ())

    extra = (f"ms per {per_name}",) if per else ()
    parts = [_table(f"CPU by thread ({whole / 1e9:.1f} CPU-s sampled)",
                    [(name, *cells(ns)) for name, ns in by_thread(counts).most_common(top)],
                    ("thread", "CPU s", "share", *extra)),
             _table("CPU by category (the innermost frame of a known part)",
                    [(name, *cells(ns)) for name, ns in by_category(counts).most_common()],
                    ("category", "CPU s", "share", *extra)),
             _table(f"Self CPU by file (top {top})",
                    [(f"`{name}`", *cells(ns)) for name, ns in by_file(counts).most_common(top)],
                    ("file", "CPU s", "share", *extra))]
    own, total = by_function(counts)
    parts.append(_table(f"CPU by function (top {top} by self)",
                        [(f"`{name}`", *cells(ns), f"{total[name] / whole:.1%}")
                         for name, ns in own.most_common(top)],
                        ("function", "self CPU s", "self share", *extra, "total share")))
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("after", type=Path)
    parser.add_argument("--before", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--per", type=int, help="add a column of ms per this many (mini-batches)")
    parser.add_argument("--thread", help="only the threads of this group (e.g. fn-worker)")
    args = parser.parse_args()
    counts = parse(args.after.read_text())
    if args.before:
        counts = subtract(counts, parse(args.before.read_text()))
    if args.thread:
        counts = Counter({k: v for k, v in counts.items() if k[0] == args.thread})
    print(render(counts, args.top, args.per))
    return 0


if __name__ == "__main__":
    sys.exit(main())
