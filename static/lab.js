// The streaming lab: one question through the real stream and through the
// deliberately broken paths of web/lab.py (POST .../stream?lab=<mode>), drawn
// one row per mode on one time axis.
//
// Self-contained: it builds its own panel inside <section id="lab-panel">,
// reads the body with its own fetch (so it can count reader chunks), and uses
// only sse.js's parser and api.js's token and error helpers. Model text is
// never put in the DOM: the lab only counts and times it.
//
// Per row: time to first text (the first chat/scenario_delta event with text,
// after fetch has decoded any Content-Encoding), network reads (reader.read()
// results), and the largest gap (the longest time with no read, from the
// request's start to its last read).

import { createSSEParser } from "./sse.js";
import { STREAM_URL, errorFromResponse, getToken } from "./api.js";

export const LAB_MODES = ["blocking", "accumulate", "buffer-4k", "gzip"];
export const ROWS = ["real", ...LAB_MODES];

// What broke and how this project avoids it. Text in `backticks` is shown as code.
export const EXPLANATIONS = {
  real: {
    title: "Real stream",
    text:
      "Nothing is held back: `agent/run.py` `Run.events` yields one `chat` event per upstream delta, and " +
      "`web/stream.py` `EventStreamResponse._write_events` sends each frame as its own ASGI body message the moment " +
      "it exists, so the browser gets about one read per token. `STREAM_HEADERS` sets `Cache-Control: no-cache` and " +
      "`X-Accel-Buffering: no` for the proxies in between, and `app.py` `create_app` installs no compression middleware.",
  },
  blocking: {
    title: "Blocking call",
    text:
      "What broke: the handler awaited the model's whole answer (a non-streaming call, or a stream drained into a list) " +
      "before it returned a response, so not even the headers leave until the end; then everything arrives in one read " +
      "(`web/lab.py` `Blocking`). How this project avoids it: `upstream/openai_compat.py` `OpenAICompatible.stream` asks " +
      "the model for `stream=True` and yields each delta as it is decoded, and `web/stream.py` `EventStreamResponse` sends " +
      "`http.response.start` and `start` before the model has answered.",
  },
  accumulate: {
    title: "Accumulated response",
    text:
      "What broke: the deltas were appended to a string (`text += delta`) and the text sent once the model finished. " +
      "The connection looks alive (headers and `start` arrive at once), yet the answer comes as one `chat` frame at the end " +
      "(`web/lab.py` `Accumulate`). How this project avoids it: the token loop in `agent/run.py` `Run.events` yields " +
      "`Chat(delta)` for every delta and never joins them; text is joined only by `web/stream.py` `collect`, for the " +
      "separate buffered route.",
  },
  "buffer-4k": {
    title: "Buffering proxy",
    text:
      "What broke: something between the server and the browser (nginx with `proxy_buffering on`, its default, or a PaaS " +
      "router) holds response bytes until its buffer fills, so small frames wait for dozens of others and arrive in " +
      "4 KiB lumps (`web/lab.py` `Buffer4k`). How this project avoids it: `web/stream.py` `STREAM_HEADERS` sends " +
      "`X-Accel-Buffering: no`, which turns nginx's buffering off for this response, and `EventStreamResponse._write_events` " +
      "writes every frame as its own body message, so nothing in our own process batches either.",
  },
  gzip: {
    title: "Compressed stream",
    text:
      "What broke: a compression layer ran the stream through deflate without a flush per frame; deflate emits bytes only " +
      "when its internal buffers fill, so the browser gets the 10-byte gzip header at once and the text at the end " +
      "(`web/lab.py` `Gzip`). fetch() decodes `Content-Encoding` transparently, which hides the cause: the page just sees " +
      "late, large reads. How this project avoids it: `app.py` `create_app` adds no compression middleware (the one " +
      "middleware, `web/gate.py` `Gate`, passes body messages through untouched); Starlette's own `GZipMiddleware` skips " +
      "`text/event-stream`, but a proxy or CDN that compresses it must be told not to.",
  },
};

const now = () => performance.now();

// ---- measuring -------------------------------------------------------------------

/**
 * The row's figures from its reads: [{t, bytes}] in ms since the request started.
 * @returns {{reads: number, bytes: number, largestGap: number, gapEndsAt: number}}
 */
export function summarize(reads) {
  let previous = 0;
  let largestGap = 0;
  let gapEndsAt = 0;
  let bytes = 0;
  for (const read of reads) {
    const gap = read.t - previous;
    if (gap > largestGap) {
      largestGap = gap;
      gapEndsAt = read.t;
    }
    previous = read.t;
    bytes += read.bytes;
  }
  return { reads: reads.length, bytes, largestGap, gapEndsAt };
}

/** The URL of one row: the real stream, or the lab mode. */
export function rowUrl(mode) {
  return mode === "real" ? STREAM_URL : `${STREAM_URL}?lab=${encodeURIComponent(mode)}`;
}

/**
 * POST the body to one row's URL and read it to the end, timing every reader chunk.
 * Resolves to {mode, status, headersAt, reads, firstTextAt, events, end, encoding}.
 */
export async function measure(mode, body, { signal } = {}) {
  const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const t0 = now();
  const res = await fetch(rowUrl(mode), { method: "POST", headers, body: JSON.stringify(body), signal, cache: "no-store" });
  const headersAt = now() - t0;
  if (!res.ok) throw await errorFromResponse(res);
  const reads = [];
  let firstTextAt = null;
  let events = 0;
  let t = 0;
  const parser = createSSEParser({
    onEvent(event) {
      events += 1;
      if (firstTextAt !== null || (event.type !== "chat" && event.type !== "scenario_delta")) return;
      try {
        if (JSON.parse(event.data).content) firstTextAt = t;
      } catch {
        /* a frame that is not JSON is not text */
      }
    },
  });
  const reader = res.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    t = now() - t0;
    reads.push({ t, bytes: value.byteLength });
    parser.feed(value);
  }
  parser.end();
  return { mode, status: res.status, headersAt, reads, firstTextAt, events, end: now() - t0, encoding: res.headers.get("Content-Encoding") };
}

// ---- drawing ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

/** A paragraph with `code` spans, built as nodes (no innerHTML). */
function richText(text) {
  const p = el("p");
  text.split("`").forEach((part, i) => p.append(i % 2 ? el("code", { text: part }) : document.createTextNode(part)));
  return p;
}

export const ms = (value) => (value == null ? "–" : `${Math.round(value)} ms`);
const percent = (t, span) => `${Math.min(100, (100 * t) / span).toFixed(2)}%`;

/** Round the axis up to a whole number of steps, at most `maxSteps`; returns {span, step} in ms. */
export function axis(maxMs, maxSteps = 8) {
  const steps = [100, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 30000, 60000];
  const step = steps.find((s) => maxMs / s <= maxSteps) ?? 60000;
  return { span: Math.max(step, Math.ceil(maxMs / step) * step), step };
}

function drawAxis(container, span, step) {
  container.replaceChildren();
  for (let t = 0; t <= span + 1e-6; t += step) {
    const label = el("span", { class: "lab-axis-label", text: t >= 1000 ? `${(t / 1000).toFixed(step < 1000 ? 1 : 0)} s` : `${t} ms` });
    label.style.left = percent(t, span);
    container.append(label);
  }
}

function drawRow(row, result, span) {
  const track = row.querySelector(".lab-track");
  const stats = row.querySelector(".lab-stats");
  track.replaceChildren();
  stats.replaceChildren();
  if (result.error) {
    row.dataset.state = "error";
    stats.append(el("span", { class: "lab-error", text: `failed: ${result.error}` }));
    return;
  }
  const summary = summarize(result.reads);
  const biggest = Math.max(1, ...result.reads.map((r) => r.bytes));
  if (summary.largestGap > 0) {
    const gap = el("span", { class: "lab-gap", title: `largest gap: ${ms(summary.largestGap)}` });
    gap.style.left = percent(summary.gapEndsAt - summary.largestGap, span);
    gap.style.width = percent(summary.largestGap, span);
    track.append(gap);
  }
  for (const read of result.reads) {
    const tick = el("span", { class: "lab-read", title: `${Math.round(read.t)} ms: ${read.bytes} bytes` });
    tick.style.left = percent(read.t, span);
    // Taller for larger reads (square root, so a 30 KB dump does not hide 70-byte tokens).
    tick.style.height = `${Math.max(18, Math.round(100 * Math.sqrt(read.bytes / biggest)))}%`;
    track.append(tick);
  }
  if (result.firstTextAt != null) {
    const first = el("span", { class: "lab-first", title: `first text: ${ms(result.firstTextAt)}` });
    first.style.left = percent(result.firstTextAt, span);
    track.append(first);
  }
  Object.assign(row.dataset, {
    state: "done",
    reads: String(summary.reads),
    ttft: String(Math.round(result.firstTextAt ?? -1)),
    gap: String(Math.round(summary.largestGap)),
    end: String(Math.round(result.end)),
  });
  track.setAttribute(
    "aria-label",
    `${row.dataset.mode}: first text at ${ms(result.firstTextAt)}, ${summary.reads} reads, largest gap ${ms(summary.largestGap)}`,
  );
  stats.append(
    el("span", { class: "lab-stat", "data-stat": "ttft" }, el("b", { text: ms(result.firstTextAt) }), " to first text"),
    el("span", { class: "lab-stat", "data-stat": "reads" }, el("b", { text: String(summary.reads) }), summary.reads === 1 ? " read" : " reads"),
    el("span", { class: "lab-stat", "data-stat": "gap" }, el("b", { text: ms(summary.largestGap) }), " largest gap"),
  );
  if (result.encoding) stats.append(el("span", { class: "lab-stat lab-encoding", text: `Content-Encoding: ${result.encoding}` }));
}

// ---- the panel -------------------------------------------------------------------

function buildPanel(section) {
  section.classList.add("panel", "lab-panel");
  section.setAttribute("aria-labelledby", "lab-heading");
  const modeSelect = el(
    "select",
    { id: "lab-intent", name: "lab-intent" },
    el("option", { value: "create", text: "Create (prose and a scenario)" }),
    el("option", { value: "explain", text: "Explain (prose only)" }),
    el("option", { value: "chat", text: "Chat (a short answer)" }),
  );
  const checks = el("fieldset", { class: "lab-modes" }, el("legend", { text: "Broken paths to run beside the real stream" }));
  for (const mode of LAB_MODES) {
    const box = el("input", { type: "checkbox", id: `lab-mode-${mode}`, name: "lab-mode", value: mode });
    box.checked = true;
    checks.append(el("label", { class: "lab-check", for: `lab-mode-${mode}` }, box, ` ${mode}`));
  }
  const run = el("button", { type: "submit", id: "lab-run", class: "btn btn-primary", text: "Run the lab" });
  const stop = el("button", { type: "button", id: "lab-stop", class: "btn btn-stop", text: "Stop" });
  stop.disabled = true;
  const form = el(
    "form",
    { id: "lab-form", class: "lab-form", "aria-label": "Streaming lab" },
    el(
      "div",
      { class: "lab-question" },
      el(
        "span",
        { class: "lab-field lab-field-wide" },
        el("label", { for: "lab-message", text: "Question" }),
        el("input", { id: "lab-message", name: "lab-message", type: "text", value: "a fire drill in a school", maxlength: "8000" }),
      ),
      el("span", { class: "lab-field" }, el("label", { for: "lab-intent", text: "Mode" }), modeSelect),
    ),
    checks,
    el("div", { class: "lab-actions" }, stop, run),
  );
  const status = el("p", { id: "lab-status", class: "muted lab-status", role: "status" });
  const axisRow = el("div", { class: "lab-axis", "aria-hidden": "true" });
  const rows = el("div", { id: "lab-rows", class: "lab-rows" });
  const explanations = el("dl", { id: "lab-explanations", class: "lab-explanations" });
  section.replaceChildren(
    el("div", { class: "panel-head" }, el("h2", { id: "lab-heading", text: "Streaming lab" })),
    el("p", {
      class: "muted",
      text:
        "The same question, the same model and the same tokens, delivered through the real stream and through deliberately " +
        "broken paths, each one a cause of “long pause, then a dump of text”. The runs go at once; each row is one request " +
        "on one shared time axis: a tick per network read (taller for more bytes), the shaded span is the largest gap, the line marks the first text.",
    }),
    form,
    status,
    el("div", { class: "lab-timeline" }, el("div", { class: "lab-axis-row" }, el("span", { class: "lab-label" }), axisRow), rows),
    explanations,
  );
  return { form, modeSelect, run, stop, status, axisRow, rows, explanations, section };
}

function rowFor(mode) {
  return el(
    "div",
    { class: "lab-row", "data-mode": mode, "data-state": "running" },
    el("span", { class: "lab-label", text: mode === "real" ? "real stream" : mode }),
    el("div", { class: "lab-track", role: "img", "aria-label": `${mode}: running` }),
    el("div", { class: "lab-stats" }, el("span", { class: "muted", text: "running…" })),
  );
}

function explain(list, modes) {
  list.replaceChildren();
  for (const mode of modes) {
    const { title, text } = EXPLANATIONS[mode];
    const item = el("div", { class: "lab-explanation", "data-mode": mode });
    item.append(el("dt", { text: `${mode === "real" ? "real stream" : mode}: ${title}` }), el("dd", {}, richText(text)));
    list.append(item);
  }
}

export function mountLab(section) {
  if (!section) return null;
  const ui = buildPanel(section);
  let controller = null;
  section.dataset.state = "idle";
  explain(ui.explanations, ROWS);

  async function runLab() {
    const message = ui.form.querySelector("#lab-message").value.trim();
    if (!message) {
      ui.status.textContent = "Type a question first.";
      return;
    }
    const modes = ["real", ...LAB_MODES.filter((m) => ui.form.querySelector(`#lab-mode-${m}`).checked)];
    const body = { message, mode: ui.modeSelect.value };
    controller = new AbortController();
    section.dataset.state = "running";
    ui.run.disabled = true;
    ui.stop.disabled = false;
    ui.status.textContent = `Running ${modes.length} requests at once…`;
    const rowNodes = new Map(modes.map((m) => [m, rowFor(m)]));
    ui.rows.replaceChildren(...rowNodes.values());
    explain(ui.explanations, modes);
    ui.axisRow.replaceChildren();
    const results = new Map();
    const redraw = () => {
      const longest = Math.max(1, ...[...results.values()].filter((r) => !r.error).map((r) => r.end));
      // About one label per 70 px, so they never overlap on a narrow screen.
      const labels = Math.max(2, Math.min(8, Math.floor(ui.axisRow.getBoundingClientRect().width / 70)));
      const { span, step } = axis(longest, labels);
      drawAxis(ui.axisRow, span, step);
      for (const [mode, result] of results) drawRow(rowNodes.get(mode), result, span);
    };
    const signal = controller.signal;
    await Promise.all(
      modes.map(async (mode) => {
        try {
          results.set(mode, await measure(mode, body, { signal }));
        } catch (err) {
          results.set(mode, { mode, error: signal.aborted ? "stopped" : err.message || String(err) });
        }
        redraw();
      }),
    );
    const failed = [...results.values()].filter((r) => r.error).length;
    ui.status.textContent = failed ? `Done; ${failed} of ${modes.length} requests failed.` : `Done: ${modes.length} requests.`;
    section.dataset.state = failed ? "error" : "done";
    ui.run.disabled = false;
    ui.stop.disabled = true;
    controller = null;
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!controller) runLab();
  });
  ui.stop.addEventListener("click", () => controller && controller.abort());
  section.dataset.ready = "true";
  return ui;
}

if (typeof document !== "undefined") mountLab(document.getElementById("lab-panel"));
