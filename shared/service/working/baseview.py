"""What scoring processes may import: the app's ``requirements.txt`` and what those packages
need, never the other packages of the worker's Python (test and development tools locally, on a
developer's machine or in CI).

A scoring process starts with ``python -S`` (no site-packages) and imports from the project (our
scoring runtime), then the job's environment (:mod:`environments`), then this *view*: a folder of
symbolic links to the allowed distributions' files in the worker's site-packages, built once per
host. A top-level entry owned only by allowed distributions is linked whole (``numpy/``); one
shared with another distribution (``azure/``, a namespace of many) is a real folder whose entries
are linked by the same rule, so ``azure.storage.blob`` is there and a development-only
``azure.*`` package is not. In a deployed app the worker's site-packages holds
``requirements.txt`` alone, and the view is all of it: local runs import what Azure imports.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import logging
import os
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from shared.service.working import scratch

log = logging.getLogger("parallelrun.baseview")

PROJECT_ROOT = Path(__file__).resolve().parents[3]
APP_REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(text: str) -> list[str]:
    """The distribution names a requirements file lists (options and comments skipped)."""
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = _NAME.match(line)
        if m and not line.startswith("-"):
            names.append(canonical(m.group(1)))
    return names


def _needs(dist: md.Distribution) -> list[str]:
    """The distributions ``dist`` requires here (markers evaluated; extras not taken)."""
    out = []
    for req in dist.requires or []:
        try:
            from packaging.requirements import Requirement
            parsed = Requirement(req)
            if parsed.marker is not None and not parsed.marker.evaluate({"extra": ""}):
                continue
            out.append(canonical(parsed.name))
        except ImportError:             # packaging missing: keep what no extra asks for
            if "extra ==" not in req:
                m = _NAME.match(req)
                if m:
                    out.append(canonical(m.group(1)))
        except Exception:  # noqa: BLE001 - an unparsable requirement of a dependency: skip it
            log.debug("requirement %r of %s not understood", req, dist.metadata["Name"])
    return out


def closure(roots: Iterable[str], installed: dict[str, md.Distribution]) -> set[str]:
    """``roots`` and every distribution they need, transitively, among ``installed``."""
    todo, seen = [canonical(r) for r in roots], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in installed:
            continue
        seen.add(name)
        todo += _needs(installed[name])
    return seen


def _installed(site: Path) -> dict[str, md.Distribution]:
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist)
    return found


def site_packages() -> Path:
    """The worker's site-packages (the one holding the app's packages)."""
    import numpy  # noqa: F401 - any package of requirements.txt shows where they are
    return Path(sys.modules["numpy"].__file__ or "").resolve().parents[1]


def owners(site: Path, installed: dict[str, md.Distribution]) -> dict[PurePosixPath, set[str]]:
    """Each file under ``site`` (relative) -> the distributions whose RECORD lists it."""
    owned: dict[PurePosixPath, set[str]] = defaultdict(set)
    for name, dist in installed.items():
        for f in dist.files or []:
            rel = PurePosixPath(str(f))
            if rel.parts and rel.parts[0] != "..":
                owned[rel].add(name)
    return owned


def plan(site: Path, allowed: set[str], owned: dict[PurePosixPath, set[str]]) -> list[PurePosixPath]:
    """The entries of ``site`` to link (see the module doc): the highest ones whose files all
    belong to allowed distributions."""
    under: dict[PurePosixPath, set[str]] = defaultdict(set)    # folder or file -> every owner beneath
    children: dict[PurePosixPath, set[PurePosixPath]] = defaultdict(set)
    top = PurePosixPath()
    for rel, names in owned.items():
        for depth in range(1, len(rel.parts) + 1):
            entry = PurePosixPath(*rel.parts[:depth])
            under[entry] |= names
            children[PurePosixPath(*rel.parts[:depth - 1]) if depth > 1 else top].add(entry)
    links: list[PurePosixPath] = []

    def place(rel: PurePosixPath) -> None:
        names = under[rel]
        if not names & allowed:
            return
        if names <= allowed or not (site / rel).is_dir():
            if (site / rel).exists():
                links.append(rel)
            return
        for child in sorted(children[rel]):
            place(child)

    for entry in sorted(children[top]):
        place(entry)
    return links


def build(target: Path, site: Path, links: list[PurePosixPath]) -> None:
    for rel in links:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(site / rel, target / rel)


_views: dict[str, Path] = {}
_plans: dict[str, list[PurePosixPath]] = {}     # per worker process: reading every RECORD costs ~1 s


def view(root: Path, requirements: Path = APP_REQUIREMENTS) -> Path:
    """The host's view (built once, under ``root``), keyed by the requirements and the worker's
    site-packages, so a reinstall or a changed requirements file gets a new one."""
    site = site_packages()
    text = requirements.read_text()
    key = hashlib.sha256(f"{site}\n{sys.version}\n{text}".encode()).hexdigest()[:16]
    cached = _views.get(f"{root}/{key}")
    if cached is not None and cached.is_dir():
        return cached
    target = root / f"view-{key}"

    def fill(staging: Path) -> None:
        links = _plans.get(key)
        if links is None:
            installed = _installed(site)
            allowed = closure(requirement_names(text), installed)
            links = _plans[key] = plan(site, allowed, owners(site, installed))
            log.info("scoring processes import %d distributions of %s (%d links): %s", len(allowed),
                     site, len(links), ", ".join(sorted(allowed)))
        build(staging, site, links)

    scratch.publish(target, fill)
    _views[f"{root}/{key}"] = target
    return target
