"""A job's ``environment``: the Python packages it brings, resolved at submission to pip
requirement lines.

The forms our users have (see docs/environments.md):

* a conda YAML in the source directory (v1 ``Environment.from_conda_specification``, v2
  ``conda_file``): ``python=X.Y`` is checked against the app's Python, ``pip`` is implied, the
  ``pip:`` list is taken as it is, and the usual PyPI-named packages (``scikit-learn=1.5``) become
  pip requirements (conda's ``=1.5`` is a prefix: ``==1.5.*``); conda-only packages (``mkl``,
  ``cudatoolkit``, ``libgcc-ng``, anything from a named channel) are refused by name;
* a pip requirements file in the source directory;
* an inline list of pip requirements (``["scikit-learn==1.5.2", "joblib"]``);
* the JSON of an ``Environment`` object's conda section (``{"dependencies": [...]}``), or v2's
  ``{"conda_file": ...}``; a Docker ``image`` is refused with what to use instead.

Pure functions of the spec and the files' text: :func:`resolve` takes a callable that reads a file
of the source directory, so the API (reading the snapshot) and the CLI (reading the folder) share it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

MAX_REQUIREMENTS = 200          # lines of one environment
MAX_LINE = 500                  # characters of one requirement
FILE_SUFFIXES_CONDA = (".yml", ".yaml", ".json")
AZUREML_BASE_IMAGES = ("mcr.microsoft.com/azureml/",)   # OS + conda: the conda file is what counts

# conda packages that are not Python distributions on PyPI (or are the interpreter's own parts)
_CONDA_ONLY = re.compile(
    r"^(_.*|lib.*|mkl(-.*)?|intel-openmp|openmp|blas|openblas|cudatoolkit|cudnn|nccl|cuda(-.*)?|"
    r"openssl|ca-certificates|ncurses|readline|sqlite|tk|xz|zlib|bzip2|zstd|ld_impl_linux-64|"
    r"gcc(_.*)?|gxx(_.*)?|nodejs|git|r-.*|cmake|make|conda(-.*)?|anaconda|tzdata)$")
_CONDA_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:(==|>=|<=|>|<|!=|=)\s*([^\s=]+))?"
                         r"(?:[=\s]\S+)?$")     # name[=version[=build]]
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._ -]+\])?\s*"
                          r"([<>=!~]=?[^;#\s]+(\s*,\s*[<>=!~]=?[^;#\s]+)*)?\s*(;.*)?$")


class BadEnvironment(ValueError):
    """An environment that cannot be used; the message names the part."""


@dataclass(frozen=True)
class Resolved:
    """An environment as pip requirement lines, with where they came from."""

    requirements: tuple[str, ...]
    source: str                       # "conda.yml", "requirements.txt", "inline"

    def to_json(self) -> dict[str, Any]:
        return {"pip": list(self.requirements), "source": self.source}


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def resolve(value: Any, read: Callable[[str], str], where: str = "environment") -> Resolved | None:
    """``value`` (one of the forms above) as pip requirements; ``read(path)`` returns a file of the
    source directory as text. Raises :class:`BadEnvironment` naming what is wrong."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"pip", "source"}:    # already resolved
        return Resolved(tuple(check_requirements(value["pip"], where)), str(value["source"]))
    if isinstance(value, str):
        return _from_file(value, read, where)
    if isinstance(value, list):
        return Resolved(tuple(check_requirements(value, where)), "inline")
    if isinstance(value, dict):
        check_image(value, where)
        if "conda_file" in value:
            extra = sorted(set(value) - {"conda_file", "image", "name", "description", "version", "tags"})
            if extra:
                raise BadEnvironment(f"{where}: {', '.join(extra)} not supported (use conda_file)")
            conda = value["conda_file"]
            if isinstance(conda, dict):        # v2 allows the specification inline
                return Resolved(tuple(conda_requirements(conda, f"{where}.conda_file")), "inline conda")
            return _from_file(str(conda), read, f"{where}.conda_file")
        if "pip" in value and set(value) <= {"pip"}:
            return Resolved(tuple(check_requirements(value["pip"], f"{where}.pip")), "inline")
        if "dependencies" in value:
            return Resolved(tuple(conda_requirements(value, where)), "inline conda")
    raise BadEnvironment(
        f"{where}: expected a conda YAML or requirements file in source_directory, a list of pip "
        "requirements, or a conda specification ({'dependencies': [...]})")


def check_image(value: dict[str, Any], where: str) -> None:
    """A Docker image is refused, except one of Azure ML's own base images beside a conda_file
    (an OS with conda, which the conda file's packages are installed on: here the app's Python)."""
    image = value.get("image")
    if image is None:
        return
    if "conda_file" in value and str(image).startswith(AZUREML_BASE_IMAGES):
        return
    raise BadEnvironment(
        f"{where}.image: Docker images are not supported ({image}; scoring processes run in the "
        "function app's Python): list the image's Python packages in a conda_file or a pip "
        "requirements file instead")


def _from_file(path: str, read: Callable[[str], str], where: str) -> Resolved:
    path = path.removeprefix("./")
    if path.startswith("azureml:"):
        raise BadEnvironment(f"{where}: registered environments ({path}) are not supported: give "
                                "its conda file or requirements in source_directory")
    try:
        text = read(path)
    except (FileNotFoundError, KeyError):
        raise BadEnvironment(f"{where}: {path} is not in source_directory") from None
    if path.lower().endswith(FILE_SUFFIXES_CONDA):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadEnvironment(f"{where}: {path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise BadEnvironment(f"{where}: {path} is not a conda specification (no dependencies)")
        return Resolved(tuple(conda_requirements(data, f"{where} ({path})")), path)
    lines = [ln.split(" #", 1)[0].strip() for ln in text.splitlines()]
    return Resolved(tuple(check_requirements([ln for ln in lines if ln and not ln.startswith("#")],
                                             f"{where} ({path})")), path)


def conda_requirements(data: dict[str, Any], where: str) -> list[str]:
    """A conda specification's dependencies as pip requirements (see the module doc)."""
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise BadEnvironment(f"{where}: dependencies must be a list")
    out: list[str] = []
    refused: list[str] = []
    for dep in deps:
        if isinstance(dep, dict):
            if set(dep) != {"pip"}:
                raise BadEnvironment(f"{where}: dependencies entry {dep!r} not understood "
                                        "(only a pip: list may be a mapping)")
            out += check_requirements(dep["pip"] or [], f"{where} pip")
            continue
        text = str(dep).strip()
        if "::" in text or "/" in text:
            refused.append(text)
            continue
        m = _CONDA_SPEC.match(text)
        if not m:
            raise BadEnvironment(f"{where}: dependency {text!r} not understood")
        name, op, version = m.group(1), m.group(2), m.group(3)
        low = name.lower()
        if low == "python":
            _check_python(op, version, where)
        elif low == "pip":
            continue
        elif _CONDA_ONLY.match(low):
            refused.append(text)
        elif op is None:
            out.append(name)
        elif op == "=":
            out.append(f"{name}=={version}" if version and version.count(".") >= 2
                       else f"{name}=={version}.*")
        else:
            out.append(f"{name}{op}{version}")
    if refused:
        raise BadEnvironment(
            f"{where}: conda-only packages cannot be installed (pip installs from the Python "
            f"package index): {', '.join(refused)}; remove them or use their PyPI names under pip:")
    return check_requirements(out, where)


def _check_python(op: str | None, version: str | None, where: str) -> None:
    if not version:
        return
    want = ".".join(version.rstrip(".*").split(".")[:2])
    if op in (None, "=", "==") and want != python_version():
        raise BadEnvironment(
            f"{where}: python={version} asked for, but scoring processes run the app's Python "
            f"{python_version()}: pin python={python_version()} or leave python out")


def check_requirements(lines: Sequence[Any], where: str) -> list[str]:
    """Pip requirement lines, checked: bounded, one requirement per line, no installer options
    (``-e``, ``--index-url``, ``-r``: an environment installs from the operator's index only) and
    no direct URLs or paths."""
    if not isinstance(lines, list | tuple):
        raise BadEnvironment(f"{where}: expected a list of pip requirements")
    if len(lines) > MAX_REQUIREMENTS:
        raise BadEnvironment(f"{where}: {len(lines)} requirements, at most {MAX_REQUIREMENTS}")
    out = []
    for raw in lines:
        line = str(raw).strip()
        if len(line) > MAX_LINE:
            raise BadEnvironment(f"{where}: a requirement longer than {MAX_LINE} characters")
        if line.startswith("-") or "://" in line or " @ " in line or line.startswith((".", "/")):
            raise BadEnvironment(f"{where}: {line!r}: only package requirements (name and version "
                                    "specifiers) are allowed, no installer options, URLs or paths")
        if not _REQUIREMENT.match(line):
            raise BadEnvironment(f"{where}: {line!r} is not a pip requirement")
        out.append(line)
    return out
