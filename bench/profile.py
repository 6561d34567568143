"""Tables from the host's profile (:mod:`shared.local.profiler`): where its CPU goes.

    .venv/bin/python -m bench.profile PROFILE.folded [--calls PROFILE.calls] [--per N] [--top 15]

Reads self CPU per (thread group, function) in the collapsed-stack format
(``thread;frame;...;leaf <ns>``; the host's profile is one frame deep) and, optionally, calls and
total CPU per function, and prints Markdown tables: CPU by thread group, by category (the
innermost frame that belongs to a known part: request signing, JSON, XML, HTTP and sockets, the
SDK's pipeline, our ledger code, the scoring pool's pipes, the local host's emulation...), by file
and by function (self, total, calls). ``--per N`` adds columns per N (mini-batches, say).
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
                                              r"|^hmac\.py:|^hashlib\.py:|_hashlib|_hmac"),
    ("JSON", r"^json/|_json\b"),
    ("SDK: (de)serialization (XML, models, dates)", r"^xml/|_serialization\.py:|_deserialize\.py:"
                                                    r"|_serialize\.py:|_models\.py:|^isodate/|^dateutil/"
                                                    r"|pyexpat|_elementtree|strptime|_strptime"),
    ("HTTP client (requests, urllib3, http.client, sockets)",
     r"^requests/|^urllib3/|^http/|^email/|^socket\.py:|^ssl\.py:|^selectors\.py:|^urllib/"
     r"|_socket\.|_ssl\.|select\.|'poll'|epoll"),
    ("os.environ (reading the environment; urllib's proxy lookup per request)",
     r"^<frozen os>:|^<frozen _collections_abc>:|^urllib/request\.py:getproxies|^urllib/request\.py:proxy_bypass"),
    ("system calls (files, pipes, processes)", r"posix\.|^subprocess\.py:|^os\.py:|io\.open|_io\."),
    ("SDK: azure-core pipeline (policies, retries, tracing)", r"^azure/core/"),
    ("SDK: storage clients (building requests, responses)", r"^azure/"),
    ("logging", r"^logging/"),
    ("local host: queue, blob and timer triggers", r"^shared/local/"),
    ("ours: ledger", r"^shared/service/ledger/"),
    ("ours: scoring pool and pipes to children", r"^shared/service/working/pool\.py:|^shared/scoring/"),
    ("ours: outputs (staging rows)", r"^shared/service/working/outputs\.py:"),
    ("ours: worker and the rest of the service", r"^shared/|^functions/|^function_app\.py:"),
    ("threads, locks, thread pools", r"^threading\.py:|^concurrent/|^queue\.py:|_thread\.|lock' objects"),
)]


Calls = dict[str, tuple[int, int, int]]   # function -> (calls, self ns, total ns)


def parse_calls(text: str) -> Calls:
    """``path:function calls self_ns total_ns`` lines -> a dict (summed over repeated names)."""
    out: dict[str, tuple[int, int, int]] = {}
    for line in text.splitlines():
        parts = line.rsplit(" ", 3)
        if len(parts) == 4 and all(p.isdigit() for p in parts[1:]):
            have = out.get(parts[0], (0, 0, 0))
            out[parts[0]] = (have[0] + int(parts[1]), have[1] + int(parts[2]), have[2] + int(parts[3]))
    return out


def subtract_calls(after: Calls, before: Calls) -> Calls:
    out = {}
    for name, (c, s, t) in after.items():
        b = before.get(name, (0, 0, 0))
        if c > b[0] or s > b[1]:
            out[name] = (c - b[0], s - b[1], t - b[2])
    return out


def calls_text(calls: Calls) -> str:
    return "".join(f"{k} {c} {s} {t}\n" for k, (c, s, t) in sorted(calls.items()))


def folded_text(counts: Counter[Stack]) -> str:
    return "".join(f"{';'.join(k)} {v}\n" for k, v in sorted(counts.items()))


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


def render(counts: Counter[Stack], top: int = 15, per: int | None = None, per_name: str = "mini-batch",
           calls: Calls | None = None) -> str:
    """The tables in Markdown (with ``calls``: total CPU and calls per function)."""
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
    if calls:
        def more(name: str) -> tuple[str, ...]:
            c, _, t = calls.get(name.split(";")[-1], (0, 0, 0))
            return (f"{t / whole:.1%}", f"{c / per:,.1f}" if per else f"{c:,}")
        more_header: tuple[str, ...] = ("total share", f"calls per {per_name}" if per else "calls")
    else:
        def more(name: str) -> tuple[str, ...]:
            return (f"{total[name] / whole:.1%}",)
        more_header = ("total share",)
    parts.append(_table(f"CPU by function (top {top} by self)",
                        [(f"`{name}`", *cells(ns), *more(name)) for name, ns in own.most_common(top)],
                        ("function", "self CPU s", "self share", *extra, *more_header)))
    if calls:
        ranked = sorted(calls.items(), key=lambda kv: -kv[1][2])
        ours = [(n, v) for n, v in ranked if n.startswith(("shared/service/", "functions/"))][:top]
        parts.append(_table(f"Our functions by total CPU (top {top}; total includes what they call)",
                            [(f"`{n}`", f"{t / 1e9:.2f}", f"{t / whole:.1%}",
                              *((f"{t / 1e6 / per:.2f}", f"{c / per:,.1f}") if per else (f"{c:,}",)))
                             for n, (c, _, t) in ours],
                            ("function", "total CPU s", "share", *((f"ms per {per_name}", f"calls per {per_name}")
                                                                    if per else ("calls",)))))
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("after", type=Path)
    parser.add_argument("--before", type=Path)
    parser.add_argument("--calls", type=Path, help="the profile's .calls file")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--per", type=int, help="add a column of ms per this many (mini-batches)")
    parser.add_argument("--threads", help="only these thread groups, comma-separated (e.g. "
                        "fn-score_batch,download: the worker's)")
    args = parser.parse_args()
    counts = parse(args.after.read_text())
    if args.before:
        counts = subtract(counts, parse(args.before.read_text()))
    if args.threads:
        keep = set(args.threads.split(","))
        counts = Counter({k: v for k, v in counts.items() if k[0] in keep})
    print(render(counts, args.top, args.per, calls=parse_calls(args.calls.read_text()) if args.calls else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
