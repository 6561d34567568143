"""The web view (/api/ui) in real headless Chromium, against the local host on a real Azurite: a
running job's page updates itself until the job is done, a failed job shows its error and
traceback (as text, never as HTML), cancel works from the page, the list shows the jobs, the page
works behind the local key, and it loads nothing from another origin.

Each test leaves a screenshot in ``test-artifacts/`` (or ``$PARALLELRUN_TEST_ARTIFACTS``). Skipped
without Chromium or Playwright, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from shared.local.azurite import free_port
from shared.local.host import LocalHost, load_app
from shared.settings import Settings
from shared.storage import Storage

from .conftest import put_files, submit, wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"

if not CHROMIUM.exists():
    if IN_CI:
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM} (CI=true)", pytrace=False)
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
try:
    from playwright.sync_api import Browser, Page, Request, sync_playwright
except ImportError:
    if IN_CI:
        raise
    pytest.skip("playwright is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@dataclass
class Seen:
    """What one page did: every request (URL, headers), the answers' statuses, script errors."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    statuses: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to(self, path: str) -> int:
        return sum(1 for url, _ in self.requests if urlsplit(url).path == path)


@pytest.fixture
def browse(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[tuple[Page, Seen]]:
    """A fresh page of its own context, recording what it requests and any script or CSP error."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = Seen()

    def on_request(req: Request) -> None:
        seen.requests.append((req.url, req.headers))

    page.on("request", on_request)
    page.on("response", lambda r: seen.statuses.append((r.url, r.status)))
    page.on("pageerror", lambda exc: seen.errors.append(f"script error: {exc}"))
    page.on("console", lambda m: seen.errors.append(m.text)
            if m.type == "error" and ("Content Security Policy" in m.text or "Refused" in m.text) else None)
    yield page, seen
    context.close()
    assert not seen.errors, seen.errors


def artifacts() -> Path:
    folder = Path(os.environ.get("PARALLELRUN_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG of ``page`` as a test artefact, checked to be a real, page-sized image."""
    path = artifacts() / f"web-ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height >= 400 and len(data) > 10_000, (path, width, height, len(data))
    return path


def number(page: Page, selector: str) -> int:
    return int(page.locator(selector).inner_text().replace(",", "").lstrip("~"))


def slow_job(code: str, container: str, name: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"name": name, "entry_script": "slow.py", "source_directory": code,
            "inputs": [f"{container}/"], "mini_batch_size": "1", "process_count_per_node": 1,
            "environment_variables": {"SLOW_SECONDS": str(seconds)}, **extra}


def failing_job(code: str, container: str, **extra: Any) -> dict[str, Any]:
    return {"name": "fails", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": [f"{container}/"], "mini_batch_size": "1", "arguments": ["--mode", "raise"],
            "run_max_try": 1, **extra}


def state_of(api: httpx.Client, job_id: str) -> dict[str, Any]:
    return api.get(f"/api/jobs/{job_id}").json()


# a file name that is HTML: its error message must be shown as text, never run
HOSTILE = "<img src=x onerror=document.title='owned'>bad.txt"


# -- (1) a running job's page updates itself ---------------------------------------------------
def test_a_running_jobs_page_updates_without_reload_and_stops_when_the_job_is_done(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        browse: tuple[Page, Seen]) -> None:
    page, seen = browse
    put_files(storage, "webui-slow", {f"{i:02d}.txt": b"x" for i in range(6)})
    job_id = submit(api, slow_job(code, "webui-slow", "slow-view", 0.3))
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    page.goto(f"{host.http_url}/api/ui/jobs/{job_id}?refresh=0.5")
    count = "() => Number(document.getElementById('items-done')?.textContent ?? -1)"
    first = page.wait_for_function(f"() => {{ const n = ({count})(); return n > 0 && n < 6 ? n : 0 }}").json_value()
    later = page.wait_for_function(f"() => {{ const n = ({count})(); return n > {first} ? n : 0 }}").json_value()
    assert 0 < first < later <= 6
    page.wait_for_selector("#state[data-state=succeeded]")
    assert number(page, "#items-done") == 6 and number(page, "#mb-succeeded") == 6
    assert loads == [page.url], "the page updated itself: one load, no reload"
    assert page.locator("#gantt rect.bar").count() == 6, "one bar per mini-batch in the timeline"
    assert page.locator("#gantt rect.s-succeeded").count() == 6
    assert page.locator("#throughput rect.tp").count() >= 1
    assert page.locator("#stages table tbody tr").count() == 5      # queue, download, wait, run, write
    page.wait_for_selector("#rows")
    assert page.locator("#rows").inner_text().splitlines() == [f"{i:02d}.txt" for i in range(6)]
    timeline = api.get(f"/api/jobs/{job_id}/timeline").json()
    assert timeline["read"] == 6 and timeline["states"] == {"succeeded": 6}
    assert sorted(b["index"] for b in timeline["bars"]) == list(range(6))
    assert timeline["throughput"]["items"] == 6 and timeline["sampled"] is None and timeline["cut"] is None
    assert sum(lane["mini_batches"] for lane in timeline["lanes"]) == 6
    page.wait_for_selector("#live[data-refresh=off]")
    polls = seen.to(f"/api/jobs/{job_id}")
    page.wait_for_timeout(1_500)          # three refresh periods: a terminal job is not asked again
    assert seen.to(f"/api/jobs/{job_id}") == polls
    screenshot(page, "running-job-done")


# -- (2) a failed job shows its error and its first traceback, as text -------------------------
@pytest.mark.stops_jobs
def test_a_failed_jobs_page_shows_its_error_and_first_traceback_as_text(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        browse: tuple[Page, Seen]) -> None:
    page, seen = browse
    put_files(storage, "webui-fail", {"a.txt": b"x", HOSTILE: b"x"})
    job_id = submit(api, failing_job(code, "webui-fail", error_threshold=0, process_count_per_node=1))
    page.goto(f"{host.http_url}/api/ui/jobs/{job_id}?refresh=0.5")
    page.wait_for_selector("#state[data-state=failed]")
    assert "error_threshold exceeded" in page.locator("#reason").inner_text()
    error = page.locator("#errors details.error").first
    assert error.get_attribute("data-kind") == "error"
    message = error.locator(".message").inner_text()
    assert "ValueError: cannot score" in message and HOSTILE in message, message
    trace = page.locator("#traceback-0").inner_text()
    assert "Traceback (most recent call last)" in trace and "misbehave.py" in trace
    assert 'raise ValueError(f"cannot score {names}")' in trace
    assert f"file {HOSTILE}" in error.inner_text(), "the example file is named"
    assert page.locator("img").count() == 0 and page.title() != "owned", "user text never became HTML"
    assert page.locator("#gantt rect.s-failed").count() >= 1
    screenshot(page, "failed-job")


# -- (3) cancel from the page ------------------------------------------------------------------
@pytest.mark.stops_jobs
def test_cancel_from_the_page_asks_first_then_cancels_the_job(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        browse: tuple[Page, Seen]) -> None:
    page, seen = browse
    put_files(storage, "webui-cancel", {f"{i:02d}.txt": b"x" for i in range(40)})
    job_id = submit(api, slow_job(code, "webui-cancel", "to-cancel", 0.5))
    page.goto(f"{host.http_url}/api/ui/jobs/{job_id}?refresh=0.5")
    page.wait_for_selector("#state[data-state=running]")
    dialogs: list[str] = []

    def answer(dialog: Any, accept: bool) -> None:
        dialogs.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.click("#cancel")
    assert dialogs and job_id in dialogs[0]
    assert seen.to(f"/api/jobs/{job_id}/cancel") == 0 and state_of(api, job_id)["reason"] == "", \
        "dismissed: nothing was sent"
    page.once("dialog", lambda d: answer(d, True))
    page.click("#cancel")
    wait_for("the job to be cancelled", lambda: state_of(api, job_id)["state"] == "cancelled")
    status = state_of(api, job_id)
    assert status["reason"] == "cancelled by user" and status["mini_batches"]["succeeded"] < 40
    page.wait_for_selector("#state[data-state=cancelled]")
    assert page.locator("#cancel").is_hidden()
    assert "cancelled by user" in page.locator("#reason").inner_text()
    page.wait_for_selector("#live[data-refresh=off]")
    screenshot(page, "cancelled-job")


# -- (4) the list of jobs --------------------------------------------------------------------
def test_the_jobs_list_shows_submitted_jobs_with_live_state_and_links(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        browse: tuple[Page, Seen]) -> None:
    page, seen = browse
    put_files(storage, "webui-list", {f"{i}.txt": b"x" for i in range(3)})
    ids = [submit(api, slow_job(code, "webui-list", name, 0.05)) for name in ("list-one", "list-two")]
    page.goto(f"{host.http_url}/api/ui?refresh=0.5")
    for job_id, name in zip(ids, ("list-one", "list-two")):
        row = page.locator(f"#jobs tr[data-job='{job_id}']")
        row.wait_for()
        assert name in row.inner_text()
        page.wait_for_selector(f"#jobs tr[data-job='{job_id}'][data-state=succeeded]")
        assert "3 / 3 items" in row.inner_text()
    order = page.locator("#jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.job)")
    assert order.index(ids[1]) < order.index(ids[0]), "newest first"
    screenshot(page, "jobs-list")
    page.click(f"#jobs tr[data-job='{ids[0]}'] a.mono")
    page.wait_for_selector("#state[data-state=succeeded]")
    assert urlsplit(page.url).path == f"/api/ui/jobs/{ids[0]}"
    assert page.locator("#job-name").inner_text() == "list-one"


# -- (5) behind the local key ----------------------------------------------------------------
KEY = "web-view-key-123"


@pytest.fixture
def keyed(settings: Settings, storage: Storage) -> Iterator[LocalHost]:
    with LocalHost(load_app(), dataclasses.replace(settings, local_key=KEY), http_port=free_port(),
                   lease_s=10) as h:
        yield h


def test_with_the_local_key_the_page_opened_with_code_works_and_calls_without_it_are_refused(
        keyed: LocalHost, storage: Storage, code: str, browse: tuple[Page, Seen]) -> None:
    page, seen = browse
    put_files(storage, "webui-key", {"a.txt": b"x", "b.txt": b"x"})
    with httpx.Client(base_url=keyed.http_url, timeout=30, headers={"x-functions-key": KEY}) as api:
        job_id = submit(api, slow_job(code, "webui-key", "keyed", 0.05))
    for path in ("/api/ui", f"/api/ui/jobs/{job_id}", "/api/ui/static/app.js", "/api/jobs",
                 f"/api/jobs/{job_id}/timeline"):
        assert page.request.get(keyed.http_url + path).status == 401, path
    assert page.request.get(f"{keyed.http_url}/api/ui?code=wrong").status == 401
    page.goto(f"{keyed.http_url}/api/ui?code={KEY}&refresh=0.5")
    page.wait_for_selector(f"#jobs tr[data-job='{job_id}'][data-state=succeeded]")
    page.click(f"#jobs tr[data-job='{job_id}'] a.mono")
    page.wait_for_selector("#state[data-state=succeeded]")
    page.wait_for_selector("#rows")
    assert page.locator("#rows").inner_text().splitlines() == ["a.txt", "b.txt"]
    assert page.locator("#gantt rect.bar").count() == 2
    screenshot(page, "keyed-job")
    assert seen.requests and not [(u, s) for u, s in seen.statuses if s == 401], seen.statuses
    for url, headers in seen.requests:
        carried = parse_qs(urlsplit(url).query).get("code") == [KEY] or headers.get("x-functions-key") == KEY
        assert carried, f"{url} was requested without the key"
    hrefs = page.locator("a[href]").evaluate_all("links => links.map(a => a.href)")
    own = [h for h in hrefs if h.startswith(keyed.http_url)]
    assert own and all(parse_qs(urlsplit(h).query).get("code") == [KEY] for h in own), own
    assert all(KEY not in h for h in hrefs if h not in own), "the key is never sent elsewhere (storage)"


# -- (6) nothing from another origin; headers --------------------------------------------------
def logs_route(page: Page, job_id: str) -> dict[str, Any]:
    """What ``GET /api/jobs/{id}/logs`` answers the page (recorded as it passes, unchanged)."""
    answered: dict[str, Any] = {}

    def handle(route: Any) -> None:
        real = route.fetch()
        if real.ok:
            answered.update(real.json())
        route.fulfill(response=real)

    page.route(f"**/api/jobs/{job_id}/logs", handle)
    return answered


def test_the_page_loads_nothing_from_another_origin_and_sends_a_strict_policy(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        browse: tuple[Page, Seen]) -> None:
    page, seen = browse
    put_files(storage, "webui-origin", {"a.txt": b"x", "bad.txt": b"x", "c.txt": b"x"})
    job_id = submit(api, failing_job(code, "webui-origin", error_threshold=-1))
    logs = logs_route(page, job_id)
    answer = page.goto(f"{host.http_url}/api/ui?refresh=0.5")
    assert answer is not None and answer.status == 200
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    page.wait_for_selector(f"#jobs tr[data-job='{job_id}'][data-state=succeeded]")
    page.goto(f"{host.http_url}/api/ui/jobs/{job_id}?refresh=0.5")
    page.wait_for_selector("#state[data-state=succeeded]")
    page.wait_for_selector("#rows")
    assert page.locator("#rows").inner_text().splitlines() == ["a.txt", "c.txt"]
    assert page.locator("#errors details.error").count() == 1
    page.wait_for_selector("#log-files")
    listed = page.locator("#log-files a.file").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert listed == [f"/api/jobs/{job_id}/logs/" + "/".join(quote(part, safe="") for part in f["path"].split("/"))
                      for f in logs["files"]], listed
    assert any(f["kind"] == "error" for f in logs["files"]), logs      # the failed try's traceback
    shown = page.request.get(host.http_url + listed[0])
    assert shown.status == 200 and shown.headers["content-type"].startswith("text/plain")
    screenshot(page, "job-with-errors")
    page.click("#resubmit")                          # a new job with the same spec, and its page
    page.wait_for_url(lambda url: job_id not in url and "/api/ui/jobs/" in url)
    new_id = urlsplit(page.url).path.rsplit("/", 1)[1]
    assert state_of(api, new_id)["name"] == "fails"
    page.wait_for_selector("#state[data-state=succeeded]")
    own = urlsplit(host.http_url)
    others = {url for url, _ in seen.requests if (urlsplit(url).scheme, urlsplit(url).netloc)
              != (own.scheme, own.netloc)}
    assert not others, others
    kinds = {urlsplit(url).path for url, _ in seen.requests}
    assert {"/api/ui/static/app.js", "/api/ui/static/app.css", f"/api/jobs/{job_id}/timeline"} <= kinds
    script = httpx.get(f"{host.http_url}/api/ui/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "max-age" in script.headers["cache-control"] and script.headers["etag"]
    assert httpx.get(f"{host.http_url}/api/ui/static/app.js",
                     headers={"if-none-match": script.headers["etag"]}).status_code == 304
    assert httpx.get(f"{host.http_url}/api/ui/static/app.css").headers["content-type"].startswith("text/css")
    for bad in ("..%2Fapi.py", "index.html", "nope.js", "%2e%2e%2f__init__.py"):
        assert httpx.get(f"{host.http_url}/api/ui/static/{bad}").status_code == 404, bad
    missing = httpx.get(f"{host.http_url}/api/jobs/no-such-job-1/timeline")
    assert missing.status_code == 404 and "no-such-job-1" in missing.text
