/* The web view of ParallelRun jobs: the recent jobs (/api/ui) and one job (/api/ui/jobs/ID).
 *
 * Everything comes from the app's own API. The page is opened as /api/ui?code=KEY where the
 * service needs a function key: every API call sends it (x-functions-key) and every link the page
 * builds carries it. What the API answers (job names, errors, tracebacks, rows: user data) is
 * shown with textContent and DOM nodes only, never parsed as HTML. A job's page refreshes itself
 * every REFRESH_S seconds (?refresh=S, 0.5-60, default 2) until the job is terminal.
 */
"use strict";

(() => {
  const query = new URLSearchParams(location.search);
  const KEY = query.get("code") || "";
  const REFRESH_S = Math.min(60, Math.max(0.5, parseFloat(query.get("refresh")) || 2));
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const STAGES = ["queue", "download", "wait", "run", "write"];
  const LOGS_EVERY_MS = 5000;
  const MAX_LOG_FILES = 300;
  const MAX_ROW_CHARS = 2000;
  const TAIL_BYTES = 65536;
  const main = document.getElementById("main");
  const banner = document.getElementById("banner");
  const live = document.getElementById("live");

  // -- links and calls ------------------------------------------------------------------------
  function withParams(path, params) {
    const q = params.toString();
    return q ? path + (path.includes("?") ? "&" : "?") + q : path;
  }

  /** A URL of the API (a log file, the JSON of a status): carries the key. */
  function keyed(path) {
    const params = new URLSearchParams();
    if (KEY) params.set("code", KEY);
    return withParams(path, params);
  }

  /** A page of this view: carries the key and the refresh setting. */
  function pageLink(path) {
    const params = new URLSearchParams();
    if (KEY) params.set("code", KEY);
    if (query.has("refresh")) params.set("refresh", String(REFRESH_S));
    return withParams(path, params);
  }

  function jobPath(id) {
    return "/api/jobs/" + encodeURIComponent(id);
  }

  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (KEY) headers["x-functions-key"] = KEY;
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { status: response.status, ok: response.ok, data };
  }

  function problem(answer, what) {
    if (answer.status === 401) {
      return `${what}: the function key is missing or wrong (open this page as /api/ui?code=KEY)`;
    }
    const said = answer.data && (answer.data.error || answer.data.detail);
    return `${what}: HTTP ${answer.status}` + (said ? `: ${typeof said === "string" ? said : JSON.stringify(said)}` : "");
  }

  function showBanner(text) {
    banner.textContent = text;
    banner.hidden = false;
  }

  function hideBanner() {
    banner.hidden = true;
    banner.textContent = "";
  }

  // -- DOM without HTML -----------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat(Infinity)) {
      if (child !== null && child !== undefined && child !== false) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    for (const child of children.flat(Infinity)) if (child) node.append(child);
    return node;
  }

  function titled(node, text) {
    const title = document.createElementNS(SVG_NS, "title");
    title.textContent = text;
    node.append(title);
    return node;
  }

  function section(id, heading) {
    return el("section", { id, class: "card" }, el("h2", { text: heading }), el("div", { class: "body" }));
  }

  function fill(id, ...children) {
    document.querySelector(`#${id} > .body`).replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  }

  // -- formatting -----------------------------------------------------------------------------
  const num = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");

  function secs(s) {
    if (typeof s !== "number" || !isFinite(s)) return "–";
    if (s < 1) return `${Math.round(s * 1000)} ms`;
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }

  function when(epoch) {
    return epoch ? new Date(epoch * 1000).toLocaleString() : "–";
  }

  function badge(state) {
    return el("span", { class: `badge s-${String(state).replace(/[^a-z]/g, "")}`, text: state || "?" });
  }

  function progressBar(total, ok, failed) {
    const bar = el("div", { class: "progress" });
    if (total > 0) {
      for (const [n, cls] of [[ok, "ok"], [failed, "failed"]]) {
        const part = el("span", { class: cls });
        part.style.width = `${Math.min(100, (100 * n) / total)}%`;   // CSSOM: allowed under the CSP
        bar.append(part);
      }
    }
    return bar;
  }

  function facts(pairs) {
    return el("dl", { class: "facts" }, pairs.map(([k, v, id]) => [el("dt", { text: k }), el("dd", { id, text: v })]));
  }

  // -- refreshing -----------------------------------------------------------------------------
  /** Runs ``step`` now and every REFRESH_S seconds while it answers true; ``now()`` runs it at once. */
  function poller(step) {
    let timer = null;
    let busy = false;
    let again = true;
    async function tick() {
      if (busy) return;
      busy = true;
      clearTimeout(timer);
      try {
        again = await step();
      } catch (exc) {
        showBanner(`refresh failed: ${exc && exc.message ? exc.message : exc}`);
      } finally {
        busy = false;
      }
      if (again) {
        live.textContent = `live · refreshing every ${REFRESH_S} s`;
        live.dataset.refresh = "on";
        timer = setTimeout(tick, REFRESH_S * 1000);
      } else {
        live.textContent = "final · not refreshing";
        live.dataset.refresh = "off";
      }
    }
    tick();
    return { now: tick };
  }

  async function mapLimit(items, limit, fn) {
    const out = new Array(items.length);
    let next = 0;
    async function worker() {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    return out;
  }

  // -- the jobs ------------------------------------------------------------------------------
  function listView() {
    document.title = "ParallelRun jobs";
    const tbody = el("tbody");
    const head = ["Name", "Job", "State", "Progress", "Created", "Links"].map((h) => el("th", { text: h }));
    const empty = el("p", { class: "muted", id: "no-jobs", text: "No jobs yet.", hidden: true });
    main.replaceChildren(el("h1", { text: "Recent jobs" }),
      el("table", { id: "jobs", class: "jobs" }, el("thead", {}, el("tr", {}, head)), tbody), empty);
    const finished = new Map();   // job id -> the status of a terminal job (it does not change)

    async function status(job) {
      if (finished.has(job.job_id)) return finished.get(job.job_id);
      const answer = await call("GET", jobPath(job.job_id));
      if (!answer.ok) return null;
      if (TERMINAL.has(answer.data.state)) finished.set(job.job_id, answer.data);
      return answer.data;
    }

    return poller(async () => {
      const answer = await call("GET", "/api/jobs?limit=30");
      if (!answer.ok) {
        showBanner(problem(answer, "the job list"));
        return answer.status !== 401;
      }
      hideBanner();
      const list = answer.data.jobs || [];
      const statuses = await mapLimit(list, 4, status);
      tbody.replaceChildren(...list.map((job, i) => jobRow(job, statuses[i])));
      empty.hidden = list.length > 0;
      return true;
    });
  }

  function jobRow(job, s) {
    const state = s ? s.state : job.state;
    const items = s ? s.items : null;
    const progress = items
      ? [progressBar(items.total, items.succeeded, items.failed),
         el("span", { class: "small", text: `${num(items.succeeded + items.failed)} / ${num(items.total)} items` })]
      : "–";
    const page = pageLink(`/api/ui/jobs/${encodeURIComponent(job.job_id)}`);
    return el("tr", { "data-job": job.job_id, "data-state": state },
      el("td", { text: job.name || "(no name)" }),
      el("td", {}, el("a", { href: page, class: "mono", text: job.job_id })),
      el("td", {}, badge(state)),
      el("td", { class: "cell-progress" }, progress),
      el("td", { text: when(job.created_at) }),
      el("td", {}, el("a", { href: keyed(jobPath(job.job_id)), text: "status JSON" })));
  }

  // -- one job -------------------------------------------------------------------------------
  function jobView(id) {
    const base = jobPath(id);
    document.title = `${id} · ParallelRun`;
    const cancel = el("button", { id: "cancel", type: "button", class: "danger", text: "Cancel job" });
    const resubmit = el("button", { id: "resubmit", type: "button", text: "Resubmit" });
    main.replaceChildren(
      el("nav", { class: "crumbs" }, el("a", { href: pageLink("/api/ui"), text: "← all jobs" })),
      el("div", { class: "title" },
        el("h1", {}, el("span", { id: "job-name" }), " ", el("span", { id: "state" })),
        el("div", { class: "actions" }, cancel, resubmit)),
      el("p", { class: "mono muted", id: "job-id", text: id }),
      el("p", { class: "reason", id: "reason", hidden: true }),
      section("progress", "Progress"),
      section("throughput", "Throughput over time"),
      section("stages", "Where the time goes"),
      section("timeline", "Mini-batches per node and process"),
      section("errors", "Errors"),
      section("output", "Output"),
      section("logs", "Logs"),
      el("p", { class: "small muted" }, "As JSON: ",
        el("a", { href: keyed(base), text: "status" }), " · ",
        el("a", { href: keyed(`${base}/timeline`), text: "timeline" })));
    let logsAt = 0;
    let resultsFinal = false;
    let current = null;

    const refresher = poller(async () => {
      const answer = await call("GET", base);
      if (!answer.ok) {
        showBanner(problem(answer, `job ${id}`));
        return answer.status !== 404 && answer.status !== 401;
      }
      hideBanner();
      const s = (current = answer.data);
      const terminal = TERMINAL.has(s.state);
      const tl = await call("GET", `${base}/timeline`);
      renderHeader(s, terminal, cancel);
      renderProgress(s, tl.ok ? tl.data : null, terminal);
      renderStages(s.stages);
      if (tl.ok) renderTimeline(tl.data);
      else fill("timeline", el("p", { class: "muted", text: problem(tl, "the timeline") }));
      renderErrors(s.errors || []);
      if (terminal || Date.now() - logsAt > LOGS_EVERY_MS) {
        logsAt = Date.now();
        await renderLogs(base);
        if (!resultsFinal) await renderOutput(base, s);
        resultsFinal = terminal;
      }
      return !terminal;
    });

    cancel.addEventListener("click", async () => {
      if (!window.confirm(`Cancel job ${id}? Mini-batches not run yet are dropped; finished output is kept.`)) return;
      cancel.disabled = true;
      const answer = await call("POST", `${base}/cancel`);
      if (!answer.ok) {
        cancel.disabled = false;
        showBanner(problem(answer, `cancelling job ${id}`));
      }
      refresher.now();
    });
    resubmit.addEventListener("click", async () => {
      resubmit.disabled = true;
      const answer = await call("POST", `${base}/resubmit`, {});
      resubmit.disabled = false;
      if (!answer.ok || !answer.data || !answer.data.job_id) {
        showBanner(problem(answer, `resubmitting job ${id}`));
        return;
      }
      location.assign(pageLink(`/api/ui/jobs/${encodeURIComponent(answer.data.job_id)}`));
    });
    return { status: () => current };
  }

  function renderHeader(s, terminal, cancel) {
    document.getElementById("job-name").textContent = s.name || "(no name)";
    document.getElementById("state").replaceChildren(badge(s.state));
    document.getElementById("state").dataset.state = s.state;
    const reason = document.getElementById("reason");
    reason.textContent = s.reason || "";
    reason.hidden = !s.reason;
    cancel.hidden = terminal || s.state === "finalizing";
  }

  function renderProgress(s, tl, terminal) {
    const items = s.items;
    const mb = s.mini_batches;
    const done = items.succeeded + items.failed;
    const left = Math.max(0, items.total - done);
    const rate = s.throughput && s.throughput.items_per_s;
    const estimated = s.items_counted && s.items_counted.total_estimated;
    let eta = "–";
    if (terminal) eta = `finished: ${s.state}`;
    else if (rate > 0 && mb.planning_done) eta = `about ${secs(left / rate)} left`;
    const states = tl ? tl.states : {};
    fill("progress",
      progressBar(items.total, items.succeeded, items.failed),
      el("p", { class: "big" },
        el("span", { id: "items-done", text: String(done) }), " of ",
        el("span", { id: "items-total", text: `${estimated ? "~" : ""}${items.total}` }), " items settled · ",
        el("span", { id: "eta", text: eta })),
      el("div", { class: "columns" },
        el("div", {}, el("h3", { text: "Items" }), facts([
          ["succeeded", num(items.succeeded), "items-succeeded"],
          ["failed", num(items.failed), "items-failed"],
          ["not settled", num(left)],
          ["output rows", num(s.rows)]])),
        el("div", {}, el("h3", { text: "Mini-batches" }), facts([
          ["planned", `${num(mb.total)}${mb.planning_done ? "" : " (planning)"}`],
          [terminal ? "not run" : "queued", num(mb.queued), "mb-queued"],
          ["running", num(mb.running), "mb-running"],
          ["retrying", num(states.retrying || 0)],
          ["succeeded", num(mb.succeeded), "mb-succeeded"],
          ["failed", num(mb.failed), "mb-failed"],
          ["failed tries", num(mb.failed_tries)]])),
        el("div", {}, el("h3", { text: "Time" }), facts([
          ["created", when(s.timings.created_at)],
          ["started", when(s.timings.started_at)],
          ["ended", when(s.timings.ended_at)],
          ["elapsed", secs(s.timings.elapsed_s)],
          ["throughput", `${num(rate)} items/s`]]))),
      (s.items_counted && s.items_counted.notes || []).map((n) => el("p", { class: "small muted", text: n })));
  }

  function renderStages(stages) {
    const total = STAGES.reduce((sum, k) => sum + (stages.total_s[k] || 0), 0);
    const bar = el("div", { class: "stack" });
    const rows = [];
    for (const k of STAGES) {
      const v = stages.total_s[k] || 0;
      const part = el("span", { class: `st-${k}`, title: `${k}: ${secs(v)}` });
      part.style.width = total > 0 ? `${(100 * v) / total}%` : "0";
      bar.append(part);
      rows.push(el("tr", {},
        el("td", {}, el("span", { class: `swatch st-${k}` }), k),
        el("td", { class: "num", text: secs(v) }),
        el("td", { class: "num", text: total > 0 ? `${Math.round((100 * v) / total)}%` : "–" }),
        el("td", { class: "num", text: `${num(stages.per_try_ms[k])} ms` })));
    }
    fill("stages", bar,
      el("table", { class: "compact" },
        el("thead", {}, el("tr", {}, ["stage", "in all", "share", "per try"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows)),
      el("p", { class: "small muted",
        text: `${num(stages.tries)} tries settled · ${num(stages.storage_calls_per_try)} storage calls per try` }));
  }

  function renderThroughput(tl) {
    const buckets = tl.throughput.buckets;
    const W = 800, H = 160, pad = 28;
    const top = Math.max(...buckets.map((b) => b.items_per_s), 0);
    const w = (W - pad) / Math.max(1, buckets.length);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H + 20}`, class: "chart", role: "img" });
    chart.append(svg("line", { x1: pad, y1: H, x2: W, y2: H, class: "axis" }));
    buckets.forEach((b, i) => {
      const h = top > 0 ? ((H - 10) * b.items_per_s) / top : 0;
      chart.append(titled(svg("rect", { x: pad + i * w + 1, y: H - h, width: Math.max(1, w - 2), height: h, class: "tp" }),
        `${secs(b.start_s)}–${secs(b.start_s + tl.bucket_s)}: ${num(b.items)} items (${num(b.items_per_s)}/s), ${num(b.mini_batches)} mini-batches`));
    });
    const label = (x, y, text, anchor) => {
      const t = svg("text", { x, y, class: "label", "text-anchor": anchor || "start" });
      t.textContent = text;
      return t;
    };
    chart.append(label(0, 12, `${num(top)}/s`), label(pad, H + 16, "0 s"),
      label(W, H + 16, secs(tl.now_s), "end"));
    fill("throughput", chart, el("p", { class: "small muted",
      text: `items settled per ${tl.bucket_s} s, by when their mini-batch settled` +
        (tl.throughput.estimated ? " (estimated from the mini-batches read)" : "") }));
  }

  function renderTimeline(tl) {
    renderThroughput(tl);
    const notes = [tl.source && `this job reused the output of ${tl.source}: its mini-batches are shown`,
      tl.cut, tl.sampled].filter(Boolean).map((n) => el("p", { class: "small note", text: n }));
    if (!tl.bars.length) {
      fill("timeline", notes, el("p", { class: "muted", text: "No mini-batch has started yet." }));
      return;
    }
    const lanes = tl.lanes;
    const W = 800, label = 150, row = 16, span = Math.max(tl.now_s, 0.001);
    const top = [];   // each lane's first row: a lane has a row per overlapping try (its slots)
    let rows = 0;
    for (const l of lanes) {
      top.push(rows);
      rows += Math.max(1, l.slots || 1);
    }
    const laneOf = new Map(lanes.map((l, i) => [`${l.node}\u0000${l.pid}`, i]));
    const H = rows * row + 24;
    const x = (t) => label + ((W - label - 4) * t) / span;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart gantt", id: "gantt", role: "img" });
    lanes.forEach((l, i) => {
      const t = svg("text", { x: 0, y: top[i] * row + 12, class: "label" });
      t.textContent = `${l.node || "?"} · ${l.pid ? `pid ${l.pid}` : "running"}`;
      chart.append(titled(t, `${l.mini_batches} tries, busy ${secs(l.busy_s)}, idle ${secs(l.idle_s)}`));
      const bottom = (top[i] + Math.max(1, l.slots || 1)) * row + 2;
      chart.append(svg("line", { x1: 0, y1: bottom, x2: W, y2: bottom, class: "grid" }));
    });
    for (const b of tl.bars) {
      const lane = laneOf.get(`${b.node}\u0000${b.pid}`) || 0;
      const end = b.end_s === null ? tl.now_s : b.end_s;
      const retried = b.state === "failed" ? b.tries > 1 : b.tries > 0;   // failed: out of tries
      const cls = ["bar", `s-${b.state}`, b.straggler && "straggler", retried && "retried",
        b.end_s === null && "open"].filter(Boolean).join(" ");
      const rect = svg("rect", { x: x(b.start_s), y: (top[lane] + (b.slot || 0)) * row + 3,
        width: Math.max(1.5, x(end) - x(b.start_s)), height: row - 4, class: cls, "data-index": b.index });
      chart.append(titled(rect, [`mini-batch ${b.index}`, b.state, b.end_s === null ? `running for ${secs(end - b.start_s)}` : secs(end - b.start_s),
        b.items === null ? "items not known yet" : `${num(b.items)} items`,
        b.tries ? `${b.tries} failed tries` : "", b.reruns ? `${b.reruns} reruns` : "",
        b.straggler ? `straggler (over ${secs(tl.straggler_after_s)})` : ""].filter(Boolean).join(" · ")));
    }
    const axis = svg("text", { x: W, y: H - 4, class: "label", "text-anchor": "end" });
    axis.textContent = secs(tl.now_s);
    const zero = svg("text", { x: label, y: H - 4, class: "label" });
    zero.textContent = "0 s";
    chart.append(axis, zero);
    const legend = el("p", { class: "legend small" },
      ["succeeded", "failed", "running", "retrying"].map((s) => [el("span", { class: `swatch s-${s}` }), s, " "]),
      el("span", { class: "swatch straggler-key" }), "straggler",
      tl.straggler_after_s ? ` (over ${secs(tl.straggler_after_s)}: 3 × the median try)` : "",
      el("br"), "A bar runs from when a worker took the mini-batch to when it settled: its download and its wait for a free process are in it.");
    const table = el("table", { class: "compact" },
      el("thead", {}, el("tr", {}, ["node", "process", "tries", "busy", "idle"].map((h) => el("th", { text: h })))),
      el("tbody", {}, lanes.map((l) => el("tr", {},
        el("td", { text: l.node }), el("td", { text: l.pid ? String(l.pid) : "(running)" }),
        el("td", { class: "num", text: num(l.mini_batches) }),
        el("td", { class: "num", text: secs(l.busy_s) }), el("td", { class: "num", text: secs(l.idle_s) })))));
    fill("timeline", notes, chart, legend, table);
  }

  function renderErrors(errors) {
    if (!errors.length) {
      fill("errors", el("p", { class: "muted", id: "no-errors", text: "No errors." }));
      return;
    }
    fill("errors", errors.map((e, i) => {
      const ex = e.example || {};
      const where = [`mini-batch ${ex.mini_batch}`, `try ${ex.attempt}`, ex.file && `file ${ex.file}`,
        ex.node, ex.process].filter(Boolean).join(", ");
      return el("details", { class: "error", open: i === 0, "data-kind": e.kind },
        el("summary", {}, el("span", { class: "count", text: `${num(e.count)} ×` }), " ",
          el("span", { class: "kind", text: e.kind }), " ",
          el("span", { class: "message", text: e.message })),
        el("p", { class: "small", text: `e.g. ${where}` }),
        e.traceback ? el("pre", { class: "traceback", id: `traceback-${i}`, text: e.traceback }) : null);
    }));
  }

  /** A log file of the job (its first MiB, as the route reads it), or its last ``tail`` bytes. */
  function logLink(base, path, tail) {
    const url = `${base}/logs/${String(path).split("/").map(encodeURIComponent).join("/")}`;
    return keyed(tail ? `${url}?tail=${tail}` : url);
  }

  async function renderLogs(base) {
    const answer = await call("GET", `${base}/logs`);
    if (answer.status === 404) {
      fill("logs", el("p", { class: "muted", id: "no-logs", text: "Logs not available (this service does not list log files)." }));
      return;
    }
    if (!answer.ok || !answer.data) {
      fill("logs", el("p", { class: "muted", text: problem(answer, "the log files") }));
      return;
    }
    const files = answer.data.files || [];
    const shown = files.slice(0, MAX_LOG_FILES);
    fill("logs",
      el("p", { class: "small" }, "In ", el("span", { class: "mono", text: answer.data.location || "" })),
      shown.length
        ? el("table", { class: "compact", id: "log-files" },
          el("thead", {}, el("tr", {}, ["kind", "node", "process", "size", "file"].map((h) => el("th", { text: h })))),
          el("tbody", {}, shown.map((f) => el("tr", {},
            el("td", { text: f.kind || "" }), el("td", { text: f.node || "" }), el("td", { text: f.process || "" }),
            el("td", { class: "num", text: typeof f.size === "number" ? `${num(f.size)} B` : "" }),
            el("td", {}, el("a", { href: logLink(base, f.path), class: "mono file", text: f.path }), " ",
              el("a", { href: logLink(base, f.path, TAIL_BYTES), class: "small tail", text: "(end)" }))))))
        : el("p", { class: "muted", text: "No log files yet." }),
      files.length > shown.length ? el("p", { class: "small muted", text: `${shown.length} of ${files.length} files listed` }) : null,
      answer.data.note ? el("p", { class: "small note", text: answer.data.note }) : null);
  }

  async function renderOutput(base, s) {
    const out = s.output;
    const where = out.blob ? `${out.container}/${out.blob}` : `${out.container}/${out.prefix} (summary only)`;
    const url = /^https?:\/\//.test(out.url || "") && out.blob
      ? el("a", { href: out.url, rel: "noreferrer", class: "mono", text: out.url }) : "–";
    const parts = [el("dl", { class: "facts" },
      el("dt", { text: "output" }), el("dd", { id: "output-blob", text: where }),
      el("dt", { text: "url" }), el("dd", {}, url),
      el("dt", { text: "logs" }), el("dd", { text: out.logs || "–" }))];
    if (out.partial) parts.push(el("p", { class: "note", text: "partial: fewer mini-batches succeeded than were planned" }));
    if (out.note) parts.push(el("p", { class: "note", text: out.note }));
    if (out.blob) {
      const answer = await call("GET", `${base}/results?head=20`);
      if (answer.ok && answer.data) {
        const rows = (answer.data.rows || []).map((r) => (r.length > MAX_ROW_CHARS ? `${r.slice(0, MAX_ROW_CHARS)}…` : r));
        parts.push(el("h3", {}, `First ${rows.length} rows · `,
          el("a", { href: keyed(`${base}/results?head=10000`), text: "the first 10,000 as JSON" })),
        el("pre", { id: "rows", class: "rows", text: rows.join("\n") }));
      } else {
        parts.push(el("p", { class: "muted", id: "no-rows",
          text: answer.status === 404 ? "No output rows yet." : problem(answer, "the output rows") }));
      }
    }
    fill("output", parts);
  }

  // -- start ---------------------------------------------------------------------------------
  document.getElementById("home").setAttribute("href", pageLink("/api/ui"));
  const match = location.pathname.match(/^\/api\/ui\/jobs\/([^/]+)\/?$/);
  if (match) jobView(decodeURIComponent(match[1]));
  else listView();
})();
