// The stream inspector: for the last request, timings, every SSE frame as it
// arrived (with its SSE id, and a marked row where a join resumed the run), and a
// canvas timeline with one tick per frame. "Compare with buffered" adds a second
// lane for the same request sent to the buffered endpoint.
//
// Per-frame work is a push onto an array; the table and the canvas are
// brought up to date at most once per animation frame.

const MAX_ROWS = 3000; // the table stops growing here; the timeline keeps every tick
const MAX_DATA = 2000; // characters of a frame's data kept in its row
const EXPANDABLE = 48; // longer data is clipped to one line, and expands on a tap
const TEXT_TYPES = new Set(["chat", "scenario_delta"]);

/** A fresh record of one request. */
export function newRun(label) {
  return {
    label,
    frames: [], // {kind: "event"|"comment"|"chunk"|"resume", type, data, t, id}
    tHeaders: null,
    tFirstText: null,
    tLastText: null,
    tEnd: null,
    textEvents: 0,
    outcome: null, // "done" | "stopped" | "error" | null while running
    outcomeDetail: "",
    requestId: null,
    serverTimings: null,
  };
}

/** Tokens (text events) per second, between the first and the last one. */
export function tokensPerSecond(run) {
  if (run.textEvents < 2 || run.tFirstText === null || run.tLastText === null) return null;
  const span = run.tLastText - run.tFirstText;
  if (span <= 0) return null;
  return ((run.textEvents - 1) * 1000) / span;
}

export const fmtMs = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`);

export function createInspector(root) {
  const $ = (sel) => root.querySelector(sel);
  const canvas = $("#timeline");
  const tbody = $("#frames-body");
  const framesNote = $("#frames-note");
  const cells = {
    stream: {
      headers: $("#stat-s-headers"),
      ttft: $("#stat-s-ttft"),
      tps: $("#stat-s-tps"),
      total: $("#stat-s-total"),
    },
    buffered: {
      headers: $("#stat-b-headers"),
      ttft: $("#stat-b-ttft"),
      tps: $("#stat-b-tps"),
      total: $("#stat-b-total"),
    },
  };
  const outcomeEl = $("#inspector-outcome");
  const legend = $("#timeline-legend");
  const emptyNote = $("#timeline-empty");

  let stream = null;
  let buffered = null;
  let rowsShown = 0;
  let numbered = 0; // frame rows so far (a join's marker row has no number)
  let pendingRows = [];
  let scheduled = false;
  let live = false; // drawing with a growing time axis
  let tickTimer = null;

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(flush);
  }

  function flush() {
    scheduled = false;
    if (pendingRows.length) {
      const frag = document.createDocumentFragment();
      for (const f of pendingRows) {
        if (rowsShown >= MAX_ROWS) break;
        if (f.kind !== "resume") numbered += 1;
        frag.appendChild(row(f, numbered));
        rowsShown += 1;
      }
      pendingRows = [];
      tbody.appendChild(frag);
      const total = stream ? stream.frames.length : 0;
      framesNote.textContent =
        total > rowsShown ? `Showing the first ${rowsShown} of ${total} frames.` : `${total} frame${total === 1 ? "" : "s"}.`;
    }
    updateStats();
    draw();
    // Keep the time axis moving while a request runs, ~10 times a second.
    if (live && !tickTimer) {
      tickTimer = setTimeout(() => {
        tickTimer = null;
        schedule();
      }, 100);
    }
  }

  function row(f, n) {
    const tr = document.createElement("tr");
    if (f.kind === "resume") {
      // Where a join picked the run up again: the frames below came from it.
      tr.className = "frame-resume";
      const td = document.createElement("td");
      td.colSpan = 5;
      td.textContent = `Joined again at ${Math.round(f.t)} ms with Last-Event-ID: ${f.id}; the frames below are the ones after it.`;
      tr.appendChild(td);
      return tr;
    }
    tr.className = f.kind === "comment" ? "frame-comment" : `frame-${f.type}`;
    const seq = f.id ? f.id.slice(f.id.lastIndexOf("-") + 1) : "";
    const cellsText = [String(n), String(Math.round(f.t)), f.kind === "comment" ? "(comment)" : f.type, seq, f.kind === "comment" ? `:${f.data}` : f.data];
    cellsText.forEach((text, i) => {
      const td = document.createElement("td");
      const shown = text.length > MAX_DATA ? text.slice(0, MAX_DATA) + "…" : text;
      if (i === 3) {
        td.className = "frame-id";
        if (f.id) td.title = f.id;
        td.textContent = shown;
      } else if (i === 4 && shown.length > EXPANDABLE) {
        // Long data is one clipped line; a tap or click (or Enter) shows all of it, wrapped.
        td.className = "frame-data";
        const toggle = document.createElement("button");
        toggle.type = "button";
        toggle.className = "frame-toggle";
        toggle.setAttribute("aria-expanded", "false");
        toggle.textContent = shown;
        td.appendChild(toggle);
      } else {
        if (i === 4) td.className = "frame-data";
        td.textContent = shown;
      }
      tr.appendChild(td);
    });
    return tr;
  }

  tbody.addEventListener("click", (e) => {
    const toggle = e.target.closest && e.target.closest("button.frame-toggle");
    if (!toggle) return;
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    toggle.closest("tr").classList.toggle("expanded", open);
  });

  function setCells(which, run, isBuffered) {
    const c = cells[which];
    if (!run) {
      for (const el of Object.values(c)) el.textContent = "–";
      return;
    }
    c.headers.textContent = fmtMs(run.tHeaders);
    c.ttft.textContent = fmtMs(run.tFirstText);
    const tps = isBuffered ? null : tokensPerSecond(run);
    c.tps.textContent = tps === null ? (isBuffered ? "all at once" : "–") : `${tps.toFixed(1)} /s`;
    c.total.textContent = fmtMs(run.tEnd);
  }

  function updateStats() {
    setCells("stream", stream, false);
    setCells("buffered", buffered, true);
    if (stream) {
      let text;
      if (!stream.outcome) text = stream.label === "Rejoined" ? "Streaming (joined again after a reload)…" : "Streaming…";
      else if (stream.outcome === "done") text = `Finished (${stream.outcomeDetail || "done"})`;
      else if (stream.outcome === "stopped") text = "Stopped by you";
      else if (stream.outcome === "interrupted") text = `Interrupted: the connection was lost (${stream.outcomeDetail})`;
      else text = `Ended with an error: ${stream.outcomeDetail}`;
      if (stream.requestId) text += ` · request ${stream.requestId}`;
      outcomeEl.textContent = text;
    } else {
      outcomeEl.textContent = "No request yet. Send a message to see its stream here.";
    }
  }

  // ---- canvas ----------------------------------------------------------------

  function colors() {
    const cs = getComputedStyle(canvas);
    const v = (name, fallback) => cs.getPropertyValue(name).trim() || fallback;
    return {
      text: v("--tl-text", "#444"),
      axis: v("--tl-axis", "#999"),
      lane: v("--tl-lane", "rgba(127,127,127,0.08)"),
      chat: v("--tl-chat", "#2563eb"),
      reasoning: v("--tl-reasoning", "#0d9488"),
      scenario_patch: v("--tl-patch", "#c026d3"),
      repair: v("--tl-repair", "#ea580c"),
      scenario_delta: v("--tl-scenario", "#7c3aed"),
      scenario: v("--tl-scenario", "#7c3aed"),
      meta: v("--tl-meta", "#6b7280"),
      error: v("--tl-error", "#dc2626"),
      comment: v("--tl-comment", "#9ca3af"),
      chunk: v("--tl-chunk", "#d97706"),
      first: v("--tl-first", "#059669"),
    };
  }

  function draw() {
    const runs = [stream, buffered].filter(Boolean);
    // Before any request there is nothing to draw: a sentence, not an empty 0-50 ms axis.
    canvas.hidden = runs.length === 0;
    if (emptyNote) emptyNote.hidden = runs.length > 0;
    legend.hidden = runs.length === 0;
    if (runs.length === 0) {
      canvas.dataset.ticks = "0";
      canvas.dataset.lanes = "0";
      return;
    }
    const dpr = Math.max(1, Math.min(3, window.devicePixelRatio || 1));
    const cssWidth = Math.max(200, Math.floor(canvas.clientWidth || canvas.parentElement.clientWidth || 600));
    const lanes = buffered ? 2 : 1;
    const laneH = 56;
    const axisH = 26;
    const cssHeight = lanes * laneH + axisH;
    const w = Math.round(cssWidth * dpr);
    const h = Math.round(cssHeight * dpr);
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    canvas.classList.toggle("two-lanes", lanes === 2);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);
    const col = colors();
    const labelW = cssWidth < 420 ? 64 : 84;
    const x0 = labelW;
    const x1 = cssWidth - 12;

    let maxT = 0;
    for (const r of runs) {
      maxT = Math.max(maxT, r.tEnd ?? 0, r.frames.length ? r.frames[r.frames.length - 1].t : 0);
      if (!r.outcome && r.startedAt !== undefined) maxT = Math.max(maxT, performance.now() - r.startedAt);
    }
    maxT = niceCeil(Math.max(maxT, 50));
    const xOf = (t) => x0 + (Math.max(0, t) / maxT) * (x1 - x0);

    ctx.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    ctx.textBaseline = "middle";
    let ticks = 0;
    const drawLane = (run, laneIndex) => {
      const top = laneIndex * laneH + 4;
      const mid = top + laneH / 2 - 6;
      // Where the ticks cross, in canvas pixels: every tick covers this row.
      canvas.dataset[`tickRow${laneIndex}`] = String(Math.round(mid * dpr));
      ctx.fillStyle = col.lane;
      ctx.fillRect(x0, top, x1 - x0, laneH - 16);
      ctx.fillStyle = col.text;
      ctx.textAlign = "left";
      ctx.fillText(run.label, 4, mid);
      // One path per colour: a long stream is thousands of ticks, redrawn
      // at most once per animation frame.
      const paths = new Map();
      for (const f of run.frames) {
        let color;
        let len;
        if (f.kind === "resume") {
          // A dashed line across the lane where a join resumed the run.
          const x = Math.round(xOf(f.t)) + 0.5;
          ctx.save();
          ctx.setLineDash([3, 3]);
          ctx.strokeStyle = col.error;
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + laneH - 16);
          ctx.stroke();
          ctx.restore();
          continue;
        }
        if (f.kind === "comment") {
          color = col.comment;
          len = 0.35;
        } else if (f.kind === "chunk") {
          color = col.chunk;
          len = 0.9;
        } else if (TEXT_TYPES.has(f.type) || f.type === "reasoning" || f.type === "scenario_patch") {
          color = col[f.type];
          len = 0.7;
        } else if (f.type === "repair") {
          color = col.repair;
          len = 1;
        } else if (f.type === "error") {
          color = col.error;
          len = 1;
        } else {
          color = col.meta;
          len = 1;
        }
        let path = paths.get(color);
        if (!path) {
          path = new Path2D();
          paths.set(color, path);
        }
        const x = Math.round(xOf(f.t)) + 0.5;
        const span = (laneH - 16) * len;
        path.moveTo(x, mid - span / 2);
        path.lineTo(x, mid + span / 2);
        ticks += 1;
      }
      ctx.lineWidth = 1;
      for (const [color, path] of paths) {
        ctx.strokeStyle = color;
        ctx.stroke(path);
      }
      if (run.tFirstText !== null) {
        const x = xOf(run.tFirstText);
        const y = top + laneH - 12;
        ctx.fillStyle = col.first;
        ctx.beginPath();
        ctx.moveTo(x, y - 7);
        ctx.lineTo(x - 5, y + 1);
        ctx.lineTo(x + 5, y + 1);
        ctx.closePath();
        ctx.fill();
        const label = `first text ${Math.round(run.tFirstText)} ms`;
        const tw = ctx.measureText(label).width;
        const right = x + 8 + tw < x1;
        ctx.textAlign = right ? "left" : "right";
        ctx.fillText(label, right ? x + 8 : x - 8, y - 3);
      }
    };
    runs.forEach(drawLane);

    // time axis
    const axisY = lanes * laneH + 4;
    ctx.strokeStyle = col.axis;
    ctx.beginPath();
    ctx.moveTo(x0, axisY + 0.5);
    ctx.lineTo(x1, axisY + 0.5);
    ctx.stroke();
    ctx.fillStyle = col.text;
    const steps = cssWidth < 420 ? 2 : 4;
    for (let i = 0; i <= steps; i++) {
      const t = (maxT * i) / steps;
      const x = xOf(t);
      ctx.beginPath();
      ctx.moveTo(Math.round(x) + 0.5, axisY);
      ctx.lineTo(Math.round(x) + 0.5, axisY + 4);
      ctx.stroke();
      ctx.textAlign = i === 0 ? "left" : i === steps ? "right" : "center";
      ctx.fillText(`${Math.round(t)} ms`, x, axisY + 14);
    }
    canvas.dataset.ticks = String(ticks);
    canvas.dataset.trackStart = String(Math.ceil(x0 * dpr));
    canvas.dataset.lanes = String(lanes);
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // ---- public ----------------------------------------------------------------

  const api = {
    /** Start recording a new streamed request; clears the previous one. Returns the run,
     *  which the other calls take so a late report from an older request is ignored. */
    begin(label = "Streamed") {
      stream = newRun(label);
      stream.startedAt = performance.now();
      buffered = null;
      rowsShown = 0;
      numbered = 0;
      pendingRows = [];
      tbody.replaceChildren();
      framesNote.textContent = "Waiting for the response…";
      live = true;
      schedule();
      return stream;
    },
    headers(run, t, requestId) {
      if (!stream || run !== stream) return;
      stream.tHeaders = t;
      stream.requestId = requestId;
      schedule();
    },
    frame(run, kind, type, data, t, id = "") {
      if (!stream || run !== stream) return;
      const f = { kind, type, data, t, id };
      stream.frames.push(f);
      if (kind === "event" && TEXT_TYPES.has(type)) {
        stream.textEvents += 1;
        if (stream.tFirstText === null) stream.tFirstText = t;
        stream.tLastText = t;
      }
      if (rowsShown + pendingRows.length < MAX_ROWS) pendingRows.push(f);
      schedule();
    },
    /** A join of the run begins here, after frame `id` (its Last-Event-ID). */
    resumed(run, id, t) {
      if (!stream || run !== stream) return;
      const f = { kind: "resume", type: "resume", data: "", t, id };
      stream.frames.push(f);
      stream.resumes = (stream.resumes || 0) + 1;
      if (rowsShown + pendingRows.length < MAX_ROWS) pendingRows.push(f);
      schedule();
    },
    end(run, outcome, detail = "", serverTimings = null) {
      if (!stream || run !== stream) return;
      stream.tEnd = performance.now() - stream.startedAt;
      stream.outcome = outcome;
      stream.outcomeDetail = detail;
      stream.serverTimings = serverTimings;
      live = false;
      schedule();
    },
    /** Record a buffered comparison run. */
    beginBuffered() {
      buffered = newRun("Buffered");
      buffered.startedAt = performance.now();
      live = true;
      schedule();
      return buffered;
    },
    bufferedChunk(t) {
      if (!buffered) return;
      buffered.frames.push({ kind: "chunk", type: "chunk", data: "", t });
      schedule();
    },
    endBuffered({ tHeaders, tDone, requestId, ok, detail }) {
      if (!buffered) return;
      buffered.tHeaders = tHeaders ?? null;
      buffered.tEnd = tDone ?? performance.now() - buffered.startedAt;
      // Nothing is visible until the whole document is in and parsed.
      buffered.tFirstText = ok ? buffered.tEnd : null;
      buffered.outcome = ok ? "done" : "error";
      buffered.outcomeDetail = detail || "";
      buffered.requestId = requestId ?? null;
      live = false;
      schedule();
    },
    get stream() {
      return stream;
    },
    get buffered() {
      return buffered;
    },
    redraw: schedule,
  };

  // Redraw when the canvas changes width (rotation, window resize).
  if (typeof ResizeObserver === "function") {
    let lastWidth = 0;
    new ResizeObserver((entries) => {
      const width = Math.round(entries[0].contentRect.width);
      if (width !== lastWidth) {
        lastWidth = width;
        schedule();
      }
    }).observe(canvas);
  }
  schedule();
  return api;
}
