"""The web view's files: shipped in an install and a deployment, served by bare name only, and the
page names its assets with the key it was opened with, escaped."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from shared.service import ui

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "shared" / "service" / "ui" / "static"


def test_the_static_files_are_package_data_and_not_left_out_of_a_deployment() -> None:
    files = sorted(p.relative_to(ROOT / "shared").as_posix() for p in STATIC.iterdir())
    assert files == ["service/ui/static/app.css", "service/ui/static/app.js", "service/ui/static/index.html"]
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["shared"]
    assert all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), (files, globs)
    ignored = [line.strip() for line in (ROOT / ".funcignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for f in files:
        path = f"shared/{f}"
        parents = [path.rsplit("/", k)[0] for k in range(1, path.count("/") + 1)]
        assert not any(fnmatch.fnmatch(p, pattern.rstrip("/")) for p in [path, *parents] for pattern in ignored), \
            (path, ignored)


def test_only_bare_names_of_scripts_and_style_sheets_are_served() -> None:
    assert ui.asset("app.js") is not None and ui.asset("app.js").media_type.startswith("text/javascript")
    assert ui.asset("app.css") is not None and ui.asset("app.css").media_type.startswith("text/css")
    for name in ("index.html", "../__init__.py", "static/app.js", "..", "app.js/", "APP.JS", "nope.js", ""):
        assert ui.asset(name) is None, name


def test_the_page_names_each_asset_by_its_hash_and_carries_the_key_escaped() -> None:
    page = ui.render_page(None)
    etag = ui.asset("app.js").etag.strip('"')
    assert f'src="/api/ui/static/app.js?v={etag}"' in page and "{{" not in page and "code=" not in page
    keyed = ui.render_page('k"><script>x</script>&')
    assert "<script>x" not in keyed and 'code=k%22%3E%3Cscript%3Ex%3C%2Fscript%3E%26"' in keyed
    assert "code=" not in ui.render_page("k" * (ui.MAX_KEY_CHARS + 1)), "a key that long is not echoed"
    assert "'unsafe" not in ui.CSP and "default-src 'self'" in ui.CSP
