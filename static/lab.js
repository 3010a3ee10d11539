// The streaming lab: one question through the real stream and through the deliberately broken
// paths of web/lab.py (POST .../stream?lab=<mode>), drawn one row per mode on one time axis that
// grows in real time while the requests run.
//
// Self-contained: it builds its own panel inside <section id="lab-panel">, reads each body with
// its own fetch (so it can count reader chunks), and uses only sse.js's parser and api.js's URLs,
// token and error helpers. Model text reaches the DOM only as text nodes.
//
// Each row, as its reads arrive: a tick per network read (reader.read() result) at the time it
// came, the text its events carried forming under the row, a shaded span for the silence since
// the last read; when the row ends, its largest gap and three figures: time to first text (the
// first chat/scenario_delta event with text, after fetch has decoded any Content-Encoding),
// reads, and the largest gap (the longest time with no read, from the request's start to its
// last read).
//
// "Drop the connection": the real stream's reader stops after a chosen frame (the frames that
// came in the same read after it are discarded, as if the connection broke there), waits, and
// joins the run again with `Last-Event-ID` (GET .../runs/{id}/stream). The run kept going on the
// server meanwhile; the row shows the cut, the time disconnected, and the resumed frames.

import { createSSEParser, parseEventId, runIdFromLocation } from "./sse.js";
import { STREAM_URL, cancelRun, errorFromResponse, getToken, runStreamUrl } from "./api.js";

export const LAB_MODES = ["blocking", "accumulate", "buffer-4k", "gzip"];
export const ROWS = ["real", ...LAB_MODES];

// Per row: `plain`, one sentence for a learner (what broke, and what a user feels); `code`, for
// readers of the code (text in `backticks` is shown as code).
export const EXPLANATIONS = {
  real: {
    title: "Real stream",
    plain: "Nothing is held back: each piece of the answer leaves the server the moment the model writes it, so you watch the text appear word by word.",
    code:
      "`agent/run.py` `Run.events` yields one `chat` event per upstream delta; `runs/live.py` `LiveRun` appends each " +
      "event's frame to the run's log as it comes, and `web/stream.py` `EventStreamWriter.write` sends each frame as its " +
      "own ASGI body message, so the browser gets about one read per token. `STREAM_HEADERS` sets `Cache-Control: no-cache` " +
      "and `X-Accel-Buffering: no` for the proxies in between, and `app.py` `create_app` installs no compression middleware.",
  },
  blocking: {
    title: "Blocking call",
    plain: "The server waited for the model's whole answer before sending anything, so you stare at a blank screen for the entire answer and then get all of it at once.",
    code:
      "The handler awaited a non-streaming call (or drained the model's stream into a list) before it built a response, so " +
      "not even the headers leave until the end (`web/lab.py` `Blocking`). The fix here: `upstream/openai_compat.py` " +
      "`OpenAICompatible.stream` asks the model for `stream=True` and yields each delta as it is decoded, and " +
      "`web/stream.py` `EventStreamWriter.begin` sends `http.response.start` before the model has answered.",
  },
  accumulate: {
    title: "Accumulated response",
    plain: "The server collected the words into one string and sent it when the model finished, so the page looks connected but you see nothing until the answer is complete.",
    code:
      "The deltas were appended to a string (`text += delta`) and the text sent once the model finished; headers and " +
      "`start` arrive at once, the answer as one `chat` frame at the end (`web/lab.py` `Accumulate`). The fix here: the " +
      "token loop in `agent/run.py` `Run.events` yields `Chat(delta)` for every delta and never joins them; text is joined " +
      "only by `web/stream.py` `Collector`, for the separate buffered route.",
  },
  "buffer-4k": {
    title: "Buffering proxy",
    plain: "Something between the server and the browser held the bytes back until it had 4 KiB of them, so you get the text in jerky lumps instead of a flow.",
    code:
      "nginx with `proxy_buffering on` (its default) or a PaaS router holds response bytes until its buffer fills, so " +
      "small frames wait for dozens of others (`web/lab.py` `Buffer4k`). The fix here: `web/stream.py` `STREAM_HEADERS` " +
      "sends `X-Accel-Buffering: no`, which turns nginx's buffering off for this response, and " +
      "`EventStreamWriter.write` writes every frame as its own body message, so nothing in our own process batches either.",
  },
  gzip: {
    title: "Compressed stream",
    plain: "A compression layer waited to fill its buffer before passing anything on, so you wait for the whole answer and get it all at once, with nothing in the browser to say why.",
    code:
      "The stream went through deflate without a flush per frame; deflate emits bytes only when its buffers fill, so the " +
      "text comes at the end (`web/lab.py` `Gzip`). fetch() decodes `Content-Encoding` transparently, which hides the " +
      "cause: the page just sees late, large reads. The fix here: `app.py` `create_app` adds no compression middleware " +
      "(the one middleware, `web/gate.py` `Gate`, passes body messages through untouched); Starlette's own " +
      "`GZipMiddleware` skips `text/event-stream`, but a proxy or CDN that compresses it must be told not to.",
  },
};

export const DROP_EXPLANATION =
  "Dropping the connection cuts only the reader: the run keeps going on the server, and the join with Last-Event-ID " +
  "gets every frame after the cut once, in order (the ones made while disconnected arrive together, then the rest live).";

const now = () => performance.now();

// ---- figures (pure) --------------------------------------------------------------

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

export const ms = (value) => (value == null ? "–" : `${Math.round(value)} ms`);

/** Round the axis up to a whole number of steps, at most `maxSteps`; returns {span, step} in ms. */
export function axis(maxMs, maxSteps = 8) {
  const steps = [100, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 30000, 60000];
  const step = steps.find((s) => maxMs / s <= maxSteps) ?? 60000;
  return { span: Math.max(step, Math.ceil(maxMs / step) * step), step };
}

/**
 * A tick's height for a read of `bytes`, as a percentage of the track: on one fixed scale (so a
 * tick never changes once drawn), square root (so a 30 KB dump does not hide 70-byte tokens).
 */
export function tickHeight(bytes) {
  return Math.max(18, Math.min(100, Math.round(100 * Math.sqrt(bytes / 16384))));
}

// ---- dropping the connection (pure) ----------------------------------------------

/** The frame to drop the connection after, from the form's text: a whole number ≥ 1, or null. */
export function cutFrame(value) {
  const text = String(value ?? "").trim();
  if (!/^[0-9]{1,6}$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 ? n : null;
}

/** A frame's number from its SSE id ("<run_id>-<seq>"), or null for any other id. */
export function frameSeq(id) {
  const parsed = parseEventId(id);
  return parsed ? parsed.seq : null;
}

/**
 * Where one event of the first connection falls: "before" (kept: at or before the cut),
 * "cut" (the frame the connection is dropped after: kept), or "after" (discarded: it came in
 * the same read as the cut but past it, so the join sends it again). `count` is the event's
 * position on the connection (from 1), used when the stream's ids carry no number.
 */
export function sideOfCut(id, count, cut) {
  const seq = frameSeq(id) ?? count;
  return seq < cut ? "before" : seq === cut ? "cut" : "after";
}

/**
 * The join request after a cut: where to GET and the Last-Event-ID to send. `location`: the
 * stream response's Content-Location (the run's join path); `lastId`: the id of the last frame
 * kept. Null when neither names a run (a server whose frames carry no ids cannot be joined).
 */
export function joinRequest(location, lastId) {
  const parsed = parseEventId(lastId);
  const runId = runIdFromLocation(location) || (parsed && parsed.runId);
  if (!runId || !parsed || parsed.runId !== runId) return null;
  return { url: runStreamUrl(runId), runId, lastEventId: lastId, after: parsed.seq };
}

/**
 * What a cut and a join delivered, from the frame numbers kept before the cut and those the join
 * brought: {cut, kept, resumed, firstResumed, lastResumed, missing, repeated, inOrder, complete}.
 * `missing`: numbers up to the last one seen that neither connection brought; `repeated`: numbers
 * brought twice. `complete`: none missing or repeated, in order, and the join starting right
 * after the cut.
 */
export function resumeReport(keptSeqs, joinedSeqs, cut) {
  const seen = new Map();
  for (const s of [...keptSeqs, ...joinedSeqs]) seen.set(s, (seen.get(s) || 0) + 1);
  const last = Math.max(0, ...seen.keys());
  const missing = [];
  for (let s = 1; s <= last; s++) if (!seen.has(s)) missing.push(s);
  const repeated = [...seen].filter(([, n]) => n > 1).map(([s]) => s).sort((a, b) => a - b);
  const inOrder = joinedSeqs.every((s, i) => i === 0 || s > joinedSeqs[i - 1]);
  const firstResumed = joinedSeqs.length ? joinedSeqs[0] : null;
  return {
    cut,
    kept: keptSeqs.length,
    resumed: joinedSeqs.length,
    firstResumed,
    lastResumed: joinedSeqs.length ? joinedSeqs[joinedSeqs.length - 1] : null,
    missing,
    repeated,
    inOrder,
    complete: missing.length === 0 && repeated.length === 0 && inOrder && (firstResumed === null || firstResumed === cut + 1),
  };
}

/**
 * One line for a learner about a cut and its join. `errorCode`: the code of an `error` event the
 * join brought (a run nobody read for longer than the server's grace ends as `cancelled`).
 */
export function describeResume(report, waitedMs, errorCode = null) {
  if (!report) return "";
  const ended = errorCode === "cancelled" ? " The run was stopped while nobody read it (the server's detached grace ran out)." : errorCode ? ` The run ended with an error: ${errorCode}.` : "";
  return describeFrames(report, waitedMs) + ended;
}

function describeFrames(report, waitedMs) {
  const frames = (n) => `${n} frame${n === 1 ? "" : "s"}`;
  const head = `Dropped after frame ${report.cut}; rejoined ${ms(waitedMs)} later with Last-Event-ID`;
  if (!report.resumed) return `${head}: nothing more to send.`;
  const range = `frames ${report.firstResumed}–${report.lastResumed}`;
  const verdict = report.complete
    ? "none missing, none twice"
    : [report.missing.length ? `${frames(report.missing.length)} missing` : "", report.repeated.length ? `${frames(report.repeated.length)} twice` : "", report.inOrder ? "" : "out of order"]
        .filter(Boolean)
        .join(", ");
  return `${head}: ${frames(report.resumed)} resumed (${range}), ${verdict}.`;
}

// ---- reading ---------------------------------------------------------------------

function authHeaders(extra) {
  const headers = { Accept: "text/event-stream", ...extra };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/**
 * Read an event stream's body to its end, or until `stop(event, count)` returns true for an
 * event (the rest of that read is discarded and the connection dropped). Calls onRead({t, bytes})
 * per read and onEvent(event, t) per event kept, with t in ms since `t0`. Resolves to
 * {dropped: boolean, lastId}.
 */
async function readEvents(res, { t0, onRead, onEvent, stop }) {
  let dropped = false;
  let count = 0;
  let t = 0;
  let lastId = "";
  const parser = createSSEParser({
    onEvent(event) {
      if (dropped) return;
      count += 1;
      lastId = event.id;
      onEvent(event, t);
      if (stop && stop(event, count)) dropped = true;
    },
  });
  const reader = res.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    t = now() - t0;
    onRead({ t, bytes: value.byteLength });
    parser.feed(value);
    if (dropped) {
      reader.cancel().catch(() => {});
      return { dropped: true, lastId };
    }
  }
  parser.end();
  return { dropped: false, lastId };
}

/** The text an event carries for the reader (chat and scenario_delta), or "". */
function eventText(event) {
  if (event.type !== "chat" && event.type !== "scenario_delta") return "";
  try {
    const content = JSON.parse(event.data).content;
    return typeof content === "string" ? content : "";
  } catch {
    return ""; // a frame that is not JSON is not text
  }
}

function errorCodeOf(event) {
  try {
    const code = JSON.parse(event.data).code;
    return typeof code === "string" ? code : null;
  } catch {
    return null;
  }
}

const sleep = (delayMs, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, delayMs);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("stopped", "AbortError"));
    });
  });

/**
 * One row's request, read to the end with every read and event handed to `view` as it comes.
 * `drop` ({frame, wait}) applies to the real stream only. Resolves to the row's result:
 * {mode, reads, firstTextAt, end, encoding, runId, drop?}.
 */
export async function measure(mode, body, view, { signal, t0, drop = null, onRunId = () => {} }) {
  const result = { mode, reads: [], firstTextAt: null, end: null, encoding: null, runId: null, drop: null };
  const onRead = (resumed) => (read) => {
    const r = resumed ? { ...read, resumed: true } : read;
    result.reads.push(r);
    view.read(r);
  };
  const onEvent = (seqs) => (event, t) => {
    const seq = frameSeq(event.id);
    if (seq !== null) seqs.push(seq);
    const text = eventText(event);
    if (!text) return;
    if (result.firstTextAt === null) {
      result.firstTextAt = t;
      view.firstText(t);
    }
    view.text(text);
  };
  const res = await fetch(rowUrl(mode), {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
    signal,
    cache: "no-store",
  });
  if (!res.ok) throw await errorFromResponse(res);
  result.encoding = res.headers.get("Content-Encoding");
  const location = res.headers.get("Content-Location");
  result.runId = runIdFromLocation(location);
  if (result.runId) onRunId(result.runId);

  const kept = [];
  const cut = mode === "real" && drop ? drop.frame : null;
  const first = await readEvents(res, {
    t0,
    onRead: onRead(false),
    onEvent: onEvent(kept),
    stop: cut === null ? null : (event, count) => sideOfCut(event.id, count, cut) === "cut",
  });
  if (first.dropped) {
    const cutAt = now() - t0;
    view.cut(cutAt, cut);
    const join = joinRequest(location, first.lastId);
    if (!join) throw new Error("this stream's frames carry no run id: it cannot be joined again");
    await sleep(drop.wait, signal);
    const joinRes = await fetch(join.url, { headers: authHeaders({ "Last-Event-ID": join.lastEventId }), signal, cache: "no-store" });
    const rejoinAt = now() - t0;
    view.rejoin(rejoinAt);
    const joined = [];
    let errorCode = null;
    if (joinRes.status !== 204) {
      if (!joinRes.ok) throw await errorFromResponse(joinRes);
      const show = onEvent(joined);
      await readEvents(joinRes, {
        t0,
        onRead: onRead(true),
        onEvent(event, t) {
          if (event.type === "error") errorCode = errorCodeOf(event) ?? "error";
          show(event, t);
        },
      });
    }
    result.drop = { cutAt, rejoinAt, status: joinRes.status, errorCode, report: resumeReport(kept, joined, cut) };
  }
  result.end = now() - t0;
  return result;
}

// ---- drawing ---------------------------------------------------------------------
//
// Positions are CSS: each mark carries its time (--t, and --w for a width) in ms, and the
// timeline its span (--span); lab.css turns them into percentages. When the axis grows, one
// property changes and every mark moves with it.

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
function richText(text, lead = null) {
  const p = el("p");
  if (lead) p.append(el("span", { class: "lab-code-lead", text: lead }));
  text.split("`").forEach((part, i) => p.append(i % 2 ? el("code", { text: part }) : document.createTextNode(part)));
  return p;
}

function mark(cls, t, title, width = null) {
  const node = el("span", { class: cls, title });
  node.style.setProperty("--t", String(Math.max(0, t)));
  if (width !== null) node.style.setProperty("--w", String(Math.max(0, width)));
  return node;
}

function drawAxis(container, span, step) {
  container.replaceChildren();
  for (let t = 0; t <= span + 1e-6; t += step) {
    const label = el("span", { class: "lab-axis-label", text: t >= 1000 ? `${(t / 1000).toFixed(step < 1000 ? 1 : 0)} s` : `${t} ms` });
    label.style.setProperty("--t", String(t));
    container.append(label);
  }
}

const rowLabel = (mode) => (mode === "real" ? "real stream" : mode);

/** One row's DOM and the calls that draw into it while its request runs. */
function createRowView(mode) {
  const track = el("div", { class: "lab-track", role: "img", "aria-label": `${rowLabel(mode)}: running` });
  const wait = mark("lab-wait", 0, "no read yet", 0);
  track.append(wait);
  const stats = el("div", { class: "lab-stats" }, el("span", { class: "muted", text: "running…" }));
  let textNode = document.createTextNode(""); // where the next text goes
  const text = el("div", { class: "lab-text", "aria-label": `Text received by ${rowLabel(mode)}` }, textNode);
  const node = el("div", { class: "lab-row", "data-mode": mode, "data-state": "running", "data-reads": "0" }, el("span", { class: "lab-label", text: rowLabel(mode) }), track, stats, text);
  let lastRead = 0;
  let reads = 0;
  let textChanged = false;
  let cutAt = null;
  let gapMark = null;

  return {
    node,
    read({ t, bytes, resumed }) {
      reads += 1;
      lastRead = t;
      const tick = mark(resumed ? "lab-read lab-resumed" : "lab-read", t, `${Math.round(t)} ms: ${bytes} bytes${resumed ? " (after the rejoin)" : ""}`);
      tick.style.height = `${tickHeight(bytes)}%`;
      track.append(tick);
      node.dataset.reads = String(reads);
    },
    text(content) {
      textNode.appendData(content);
      textChanged = true;
    },
    firstText(t) {
      track.append(mark("lab-first", t, `first text: ${ms(t)}`));
    },
    cut(t, frame) {
      cutAt = t;
      lastRead = t;
      track.append(mark("lab-cut", t, `connection dropped after frame ${frame}`));
      gapMark = mark("lab-away", t, "disconnected", 0);
      track.append(gapMark);
      text.append(el("span", { class: "lab-text-cut", text: ` [connection dropped after frame ${frame}] ` }));
      node.dataset.cut = String(frame);
    },
    rejoin(t) {
      if (gapMark) gapMark.style.setProperty("--w", String(Math.max(0, t - cutAt)));
      gapMark = null;
      lastRead = t;
      track.append(mark("lab-rejoin", t, "joined again with Last-Event-ID"));
      textNode = document.createTextNode("");
      text.append(el("span", { class: "lab-text-cut", text: "[rejoined] " }), textNode);
      node.dataset.rejoined = "true";
    },
    /** Per animation frame while running: the silence since the last read grows with the clock. */
    tick(elapsed) {
      wait.style.setProperty("--t", String(lastRead));
      wait.style.setProperty("--w", String(Math.max(0, elapsed - lastRead)));
      if (gapMark) gapMark.style.setProperty("--w", String(Math.max(0, elapsed - cutAt)));
      if (textChanged) {
        text.scrollTop = text.scrollHeight;
        textChanged = false;
      }
    },
    finish(result) {
      wait.remove();
      stats.replaceChildren();
      if (result.error) {
        node.dataset.state = "error";
        track.setAttribute("aria-label", `${rowLabel(mode)}: failed`);
        stats.append(el("span", { class: "lab-error", text: `failed: ${result.error}` }));
        return;
      }
      const summary = summarize(result.reads);
      if (summary.largestGap > 0) {
        track.prepend(mark("lab-gap", summary.gapEndsAt - summary.largestGap, `largest gap: ${ms(summary.largestGap)}`, summary.largestGap));
      }
      Object.assign(node.dataset, {
        state: "done",
        reads: String(summary.reads),
        ttft: String(Math.round(result.firstTextAt ?? -1)),
        gap: String(Math.round(summary.largestGap)),
        end: String(Math.round(result.end)),
      });
      track.setAttribute(
        "aria-label",
        `${rowLabel(mode)}: first text at ${ms(result.firstTextAt)}, ${summary.reads} reads, largest gap ${ms(summary.largestGap)}`,
      );
      stats.append(
        el("span", { class: "lab-stat", "data-stat": "ttft" }, el("b", { text: ms(result.firstTextAt) }), " to first text"),
        el("span", { class: "lab-stat", "data-stat": "reads" }, el("b", { text: String(summary.reads) }), summary.reads === 1 ? " read" : " reads"),
        el("span", { class: "lab-stat", "data-stat": "gap" }, el("b", { text: ms(summary.largestGap) }), " largest gap"),
      );
      if (result.encoding) stats.append(el("span", { class: "lab-stat lab-encoding", text: `Content-Encoding: ${result.encoding}` }));
      if (result.drop) {
        const { report, cutAt: from, rejoinAt, status, errorCode } = result.drop;
        node.dataset.resume = report.complete ? "complete" : "incomplete";
        node.dataset.resumed = String(report.resumed);
        const line = status === 204 ? `Dropped after frame ${report.cut}; the run was gone when the page rejoined (204).` : describeResume(report, rejoinAt - from, errorCode);
        stats.append(el("span", { class: `lab-stat lab-resume${report.complete ? "" : " lab-error"}`, text: line }));
      }
    },
  };
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
  const dropBox = el("input", { type: "checkbox", id: "lab-drop", name: "lab-drop" });
  const dropFrame = el("input", { type: "number", id: "lab-drop-frame", name: "lab-drop-frame", min: "1", max: "99999", step: "1", value: "40", inputmode: "numeric" });
  const dropWait = el("input", { type: "number", id: "lab-drop-wait", name: "lab-drop-wait", min: "0", max: "10000", step: "100", value: "1000", inputmode: "numeric" });
  const drop = el(
    "fieldset",
    { class: "lab-drop" },
    el("legend", { text: "Drop the connection" }),
    el("label", { class: "lab-check", for: "lab-drop" }, dropBox, " cut the real stream"),
    el("span", { class: "lab-field" }, el("label", { for: "lab-drop-frame", text: "after frame" }), dropFrame),
    el("span", { class: "lab-field" }, el("label", { for: "lab-drop-wait", text: "rejoin after (ms)" }), dropWait),
  );
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
    drop,
    el("div", { class: "lab-actions" }, stop, run),
  );
  const status = el("p", { id: "lab-status", class: "muted lab-status", role: "status" });
  const axisRow = el("div", { class: "lab-axis", "aria-hidden": "true" });
  const rows = el("div", { id: "lab-rows", class: "lab-rows" });
  const timeline = el("div", { class: "lab-timeline" }, el("div", { class: "lab-axis-row" }, el("span", { class: "lab-label" }), axisRow), rows);
  const explanations = el("dl", { id: "lab-explanations", class: "lab-explanations" });
  section.replaceChildren(
    el("div", { class: "panel-head" }, el("h2", { id: "lab-heading", text: "Streaming lab" })),
    el("p", {
      class: "muted",
      text:
        "The same question, the same model and the same tokens, delivered through the real stream and through deliberately " +
        "broken paths, each one a cause of “long pause, then a dump of text”. The requests go at once and are drawn as they " +
        "run, one row each on one time axis: a tick per network read (taller for more bytes) at the moment it arrived, the " +
        "text each one has received below it, and, at the end, the largest gap shaded and a line at the first text.",
    }),
    form,
    status,
    timeline,
    explanations,
  );
  return { form, modeSelect, dropBox, dropFrame, dropWait, run, stop, status, axisRow, rows, timeline, explanations, section };
}

function explain(list, modes, dropped) {
  list.replaceChildren();
  for (const mode of modes) {
    const { title, plain, code } = EXPLANATIONS[mode];
    const item = el("div", { class: "lab-explanation", "data-mode": mode });
    item.append(
      el("dt", { text: `${rowLabel(mode)}: ${title}` }),
      el("dd", {}, el("p", { class: "lab-plain", text: plain }), richText(code, "In the code: ")),
    );
    list.append(item);
  }
  if (dropped) {
    const item = el("div", { class: "lab-explanation", "data-mode": "drop" });
    item.append(el("dt", { text: "drop the connection: Rejoining a run" }), el("dd", {}, el("p", { class: "lab-plain", text: DROP_EXPLANATION })));
    list.append(item);
  }
}

export function mountLab(section) {
  if (!section) return null;
  const ui = buildPanel(section);
  let controller = null;
  let realRun = null; // the real stream's run id, to stop it on the server too
  section.dataset.state = "idle";
  explain(ui.explanations, ROWS, false);

  async function runLab() {
    const message = ui.form.querySelector("#lab-message").value.trim();
    if (!message) {
      ui.status.textContent = "Type a question first.";
      return;
    }
    let drop = null;
    if (ui.dropBox.checked) {
      const frame = cutFrame(ui.dropFrame.value);
      const wait = cutFrame(ui.dropWait.value) ?? 0;
      if (frame === null) {
        ui.status.textContent = "Pick the frame to drop the connection after: a whole number from 1.";
        return;
      }
      drop = { frame, wait: Math.min(10000, wait) };
    }
    const modes = ["real", ...LAB_MODES.filter((m) => ui.form.querySelector(`#lab-mode-${m}`).checked)];
    const body = { message, mode: ui.modeSelect.value };
    controller = new AbortController();
    realRun = null;
    section.dataset.state = "running";
    ui.run.disabled = true;
    ui.stop.disabled = false;
    ui.status.textContent = `Running ${modes.length} requests at once…`;
    const views = new Map(modes.map((m) => [m, createRowView(m)]));
    ui.rows.replaceChildren(...[...views.values()].map((v) => v.node));
    explain(ui.explanations, modes, Boolean(drop));

    // The shared clock: the axis grows with the time elapsed, and every mark moves with it.
    const t0 = now();
    const running = new Set(modes);
    let span = 0;
    let longest = 0;
    const labels = Math.max(2, Math.min(8, Math.floor(ui.axisRow.getBoundingClientRect().width / 70) || 8));
    const setSpan = (ms_) => {
      const next = axis(Math.max(1, ms_), labels);
      if (next.span === span) return;
      span = next.span;
      ui.timeline.style.setProperty("--span", String(span));
      drawAxis(ui.axisRow, span, next.step);
    };
    const frame = () => {
      const elapsed = now() - t0;
      setSpan(Math.max(elapsed, longest));
      for (const mode of running) views.get(mode).tick(elapsed);
      if (running.size) requestAnimationFrame(frame);
    };
    setSpan(1);
    requestAnimationFrame(frame);

    const signal = controller.signal;
    const results = new Map();
    await Promise.all(
      modes.map(async (mode) => {
        const view = views.get(mode);
        let result;
        try {
          result = await measure(mode, body, view, { signal, t0, drop, onRunId: (id) => mode === "real" && (realRun = id) });
        } catch (err) {
          result = { mode, error: signal.aborted ? "stopped" : err.message || String(err) };
        }
        results.set(mode, result);
        running.delete(mode);
        if (result.end) longest = Math.max(longest, result.end);
        view.finish(result);
      }),
    );
    // The finished axis: just long enough for the longest row.
    span = 0;
    setSpan(longest || now() - t0);
    const failed = [...results.values()].filter((r) => r.error).length;
    ui.status.textContent = failed ? `Done; ${failed} of ${modes.length} requests failed.` : `Done: ${modes.length} requests.`;
    section.dataset.state = failed ? "error" : "done";
    ui.run.disabled = false;
    ui.stop.disabled = true;
    controller = null;
    realRun = null;
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!controller) runLab();
  });
  ui.stop.addEventListener("click", () => {
    if (!controller) return;
    // Stop is cancel: the real stream's run ends on the server too, not after its grace.
    if (realRun) cancelRun(realRun);
    controller.abort();
  });
  section.dataset.ready = "true";
  return ui;
}

if (typeof document !== "undefined") mountLab(document.getElementById("lab-panel"));
